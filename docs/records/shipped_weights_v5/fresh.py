"""The shipped classifier on three synthetic tomograms no choice has seen (seeds 3, 4, 5; SNR 0.05), with the
README's inference command, as ``shipped_weights_v4/measure.py`` section 1 does for seeds 0–2 (run from the
repository root; the first argument is a scratch folder):

    OMP_NUM_THREADS=1 .venv/bin/python docs/records/shipped_weights_v5/fresh.py /tmp/fresh > docs/records/shipped_weights_v5/fresh.txt
"""
import subprocess
import sys
from pathlib import Path

from cryomonai.io import read_particle_table

root, py, B = Path(sys.argv[1]), sys.executable, "bundles/cryo_ssl/configs"


def infer(star: Path, out: Path, pad: bool) -> tuple[int, int]:
    cmd = [py, "-m", "monai.bundle", "run", "inference", "--config_file", f"['{B}/common.json','{B}/inference.json']",
           "--bundle_root", "bundles/cryo_ssl", "--checkpoint", "simclr_rb3d_bn_16_classifier", "--encoder", "rb3d_bn",
           "--infer_table", str(star), "--box", "16", "--infer_voxel_size", "20", "--output_dir", str(out)]
    subprocess.run(cmd + (["--infer_edge", "pad"] if pad else []), check=True, capture_output=True)
    df = read_particle_table(out / "predictions.star").df
    return int((df["cryoInputClassName"] == df["cryoPredictedClassName"]).sum()), len(df)


print("| tomogram (SNR 0.05) | README's command: accuracy (picks kept) | --infer_edge pad: accuracy (all picks) |\n|---|---:|---:|")
total = [0, 0, 0, 0]
for seed in (3, 4, 5):
    folder = root / f"tomo_s{seed}"
    if not (folder / "particles.star").is_file():
        subprocess.run([py, "-m", "cryomonai.cli", "simulate-tomogram", "--out", str(folder), "--snr", "0.05",
                        "--seed", str(seed)], check=True, capture_output=True)
    (k, n), (kp, npad) = infer(folder / "particles.star", folder / "pred", False), infer(folder / "particles.star", folder / "pred_pad", True)
    total = [a + b for a, b in zip(total, (k, n, kp, npad))]
    print(f"| seed {seed} | {100 * k / n:.1f} % ({n}) | {100 * kp / npad:.1f} % ({npad}) |", flush=True)
print(f"| all three | {100 * total[0] / total[1]:.1f} % ({total[1]}) | {100 * total[2] / total[3]:.1f} % ({total[3]}) |")
