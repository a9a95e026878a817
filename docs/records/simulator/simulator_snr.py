"""The measured-SNR table of the README's simulator section: python docs/records/simulator/simulator_snr.py > docs/records/simulator/simulator_snr.txt"""
import tempfile, pathlib, numpy as np, platform, subprocess
from cryomonai.simulate.dataset import simulate_dataset
from cryomonai.io import read_particle_table


def main():
    cpu = [l.split(":",1)[1].strip() for l in subprocess.run(["lscpu"],capture_output=True,text=True).stdout.splitlines() if l.startswith("Model name")][0]
    print(f"# measured SNR per particle, 10 SHREC classes x 20, 32^3, defaults; {cpu}; docs/records/simulator/simulator_snr.py")
    for model, snr in (("split", 0.05), ("filtered", 0.05), ("aitom", 0.05), ("aitom", 0.03)):
        d = pathlib.Path(tempfile.mkdtemp()) / "s"
        simulate_dataset(d, n_per_class=20, snr=snr, noise_model=model, workers=2, progress=False,
                         n_neighbours=4, neighbour_gap=[0, 2], neighbour_contact="target")  # the touching shell (the default before issue 26)
        df = read_particle_table(d / "particles.star").df
        q = lambda c: np.percentile(df[c].astype(float), [25, 50, 75])
        b, t = q("cryoSNRBox"), q("cryoSNRTarget")
        print(f"{model:9s} nominal {snr}: cryoSNRBox median {b[1]:.3f} (quartiles {b[0]:.3f}-{b[2]:.3f}), cryoSNRTarget median {t[1]:.3f} ({t[0]:.3f}-{t[2]:.3f})")


if __name__ == "__main__":
    main()
