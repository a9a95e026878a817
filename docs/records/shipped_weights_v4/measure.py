"""What a classifier and its encoder score where a user meets them (run from the repository root):

    OMP_NUM_THREADS=1 .venv/bin/python docs/records/shipped_weights_v4/measure.py /tmp/shipped_measure \
        CLASSIFIER ENCODER [BOX VOXEL_SIZE_A] > docs/records/shipped_weights_v4/measure.txt

CLASSIFIER and ENCODER are shipped names or checkpoint paths; each network is built from its checkpoint's run
info (bundle 0.8.2), so a wider encoder needs no flag. BOX / VOXEL_SIZE_A: the classifier's input (16, 20 Å).
[shipped_weights_v2/measure.py](../shipped_weights_v2/measure.py) with the weights as arguments.

1. The walkthrough: the README's synthetic tomogram (``cryomonai simulate-tomogram``, seed 0, SNR 0.05 and
   noise-free) and two more seeds, classified by the README's own inference command (16³ boxes at 20 Å
   cut from the 10 Å tomogram; picks too near the edge are left out, as the README's command does), and
   with ``--infer_edge pad`` (every pick).
2. Isolated and crowded particles: simulated subtomograms of the walkthrough's kind (SNR 0.05, the
   simulator's default noise model, 32³ binned 2× to 16³ at 20 Å, seed 11, never seen in training)
   with exactly 0, 1, 2, 3 or 4 neighbours, 200 each.
3. The encoder: a 5-fold cross-validated linear probe on its frozen features of 300 such subtomograms
   (0–4 neighbours), against the same encoder at random initialisation.
"""
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from cryomonai.data import VolumeStackDataset
from cryomonai.engines.weights import weights_file
from cryomonai.io import read_particle_table
from cryomonai.engines import build_network, saved_encoder_args
from cryomonai.networks import Classifier
from cryomonai.pipeline import bundle_dir
from cryomonai.simulate.prepare import ensure_dataset
from cryomonai.transforms import eval_transform

root = Path(sys.argv[1])
CLASSIFIER, ENCODER = sys.argv[2], sys.argv[3]
BOX, VOXEL = (int(sys.argv[4]), float(sys.argv[5])) if len(sys.argv) > 5 else (16, 20.0)
BINNING = round(VOXEL / 10.0)  # the simulator's templates are 10 Å maps
py = sys.executable
B = "bundles/cryo_ssl/configs"


def infer(star: Path, out: Path, pad: bool) -> tuple[float, int]:
    cmd = [py, "-m", "monai.bundle", "run", "inference", "--config_file", f"['{B}/common.json','{B}/inference.json']",
           "--bundle_root", "bundles/cryo_ssl", "--checkpoint", CLASSIFIER, "--encoder", "rb3d_bn",
           "--infer_table", str(star), "--box", str(BOX), "--infer_voxel_size", str(VOXEL), "--output_dir", str(out)]
    if pad:
        cmd += ["--infer_edge", "pad"]
    subprocess.run(cmd, check=True, capture_output=True)
    df = read_particle_table(out / "predictions.star").df
    return float((df["cryoInputClassName"] == df["cryoPredictedClassName"]).mean()), len(df)


print("## 1. The walkthrough's synthetic tomogram (100 picks of 10 classes per tomogram; chance 10 %)\n")
print("| tomogram | SNR | README's command: accuracy (picks kept) | --infer_edge pad: accuracy (all picks) |\n|---|---|---:|---:|")
pooled = {}
for seed in (0, 1, 2):
    for snr in ("0.05", "inf"):
        folder = root / f"tomo_s{seed}_{snr}"
        if not (folder / "particles.star").is_file():
            subprocess.run([py, "-m", "cryomonai.cli", "simulate-tomogram", "--out", str(folder), "--snr", snr,
                            "--seed", str(seed)], check=True, capture_output=True)
        (a, n), (ap, npad) = infer(folder / "particles.star", folder / "pred", False), infer(folder / "particles.star", folder / "pred_pad", True)
        pooled.setdefault(snr, []).append((a * n, n, ap * npad, npad))
        name = "the README's (seed 0)" if seed == 0 else f"seed {seed}"
        print(f"| {name} | {snr} | {100 * a:.1f} % ({n}) | {100 * ap:.1f} % ({npad}) |", flush=True)
for snr, rows in pooled.items():
    r = np.asarray(rows).sum(0)
    print(f"| all three | {snr} | {100 * r[0] / r[1]:.1f} % ({int(r[1])}) | {100 * r[2] / r[3]:.1f} % ({int(r[3])}) |")

clf_file = weights_file(CLASSIFIER, bundle_dir(), "classifier")
ckpt = torch.load(clf_file, weights_only=True)
net = Classifier(build_network("rb3d_bn", clf_file), 10)
net.load_state_dict(ckpt["model"])
net.eval()


def simulated(folder: Path, n_per_class: int, **kw):
    table = read_particle_table(ensure_dataset(folder / "particles.star", folder / "cache" / "volumes.npy", progress=False,
                                               n_per_class=n_per_class, snr=0.05, box=BOX, binning=BINNING,
                                               max_shift=2.0 * 2 / BINNING,
                                               seed=11, workers=0, **kw))
    return table, folder / "cache" / "volumes.npy"


print("\n## 2. Isolated and crowded subtomograms (SNR 0.05, seed 11; chance 10 %)\n")
print("| neighbours | subtomograms | accuracy (%) |\n|---:|---:|---:|")
for n in range(5):
    table, cache = simulated(root / f"nb{n}", 20, n_neighbours=n)
    loader = DataLoader(VolumeStackDataset(table, cache, transform=eval_transform(), progress=False), batch_size=64)
    with torch.no_grad():
        pred = torch.cat([net(b["image"].as_tensor()).argmax(1) for b in loader])
    print(f"| {n} | {len(table.df)} | {100 * float((pred.numpy() == table.df['label_index'].to_numpy()).mean()):.1f} |", flush=True)

print("\n## 3. Linear probe (5-fold CV) on frozen features, 300 subtomograms with 0–4 neighbours\n")
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.model_selection import StratifiedKFold, cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from cryomonai.evaluation.readouts import encoder_features  # noqa: E402

table, cache = simulated(root / "mixed", 30)
labels = table.df["label_index"].to_numpy()
enc_file = weights_file(ENCODER, bundle_dir())
for name, checkpoint in (("the encoder", enc_file), ("random init (as wide)", "")):
    features = encoder_features(table, cache, "rb3d_bn", checkpoint, **saved_encoder_args(enc_file, "rb3d_bn"))
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
    scores = cross_val_score(model, features, labels, cv=StratifiedKFold(5, shuffle=True, random_state=0))
    print(f"- {name}: {100 * scores.mean():.1f} %")
