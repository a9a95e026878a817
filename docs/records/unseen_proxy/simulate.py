"""The two stand-in datasets (run from the repository root): ``.venv/bin/python docs/records/unseen_proxy/simulate.py OUT``.

12 complexes, other optics than the project's data (defocus -3 um, 200 kV, tilt +-50 deg), neighbours
0-4 at 2-8 voxels beyond contact (never touching), 60 per class split 36/12/12 (432/144/144 subtomograms),
32^3 at 10 A: OUT/snr0.1 (AITom SNR 0.1, seed 777001) and OUT/snr_inf (noise-free, seed 777002).
"""
import sys

from cryomonai.simulate.dataset import simulate_dataset

CLASSES = ("1bxn", "1qvr", "1s3x", "1u6g", "2cg9", "3cf3", "3d2f", "3gl1", "3h84", "3j9i", "3qm1", "4v4r_30S")
if __name__ == "__main__":
    for name, snr, seed in (("snr0.1", 0.1, 777001), ("snr_inf", float("inf"), 777002)):
        simulate_dataset(f"{sys.argv[1]}/{name}", n_per_class=60, snr=snr, box=32, seed=seed, classes=CLASSES,
                         imaging={"defocus_um": -3.0, "voltage_kv": 200.0, "tilt_range": (-50.0, 50.0)},
                         split_fractions=(0.6, 0.2, 0.2), noise_model="aitom", neighbour_gap=(2.0, 8.0), workers=0)
