"""v3 against v4 on the same walkthrough picks, pick by pick (exact McNemar: a two-sided binomial test on the
picks where one classifier is right and the other wrong). Reads the predictions both measure.py runs wrote:

    .venv/bin/python docs/records/shipped_weights_v4/paired.py /tmp/shipped_measure_v3 /tmp/shipped_measure4 \
        > docs/records/shipped_weights_v4/paired.txt
"""
import sys
from pathlib import Path

import numpy as np
from scipy.stats import binomtest

from cryomonai.io import read_particle_table

old, new = Path(sys.argv[1]), Path(sys.argv[2])
KEYS = ["cryoInputClassName", "x", "y", "z"]


def right(root: Path, tomo: str, pred: str) -> tuple[np.ndarray, list]:
    df = read_particle_table(root / tomo / pred / "predictions.star", check_files=False).df
    keys = [tuple(r) for r in df[[c for c in KEYS if c in df.columns]].itertuples(index=False)]
    return (df["cryoInputClassName"] == df["cryoPredictedClassName"]).to_numpy(), keys


print("| picks | n | v3 | v4 | only v3 right | only v4 right | McNemar p |\n|---|---:|---:|---:|---:|---:|---:|")
for label, tomos, pred in (("the README's tomogram, its command", ["tomo_s0_0.05"], "pred"),
                           ("the README's tomogram, pad", ["tomo_s0_0.05"], "pred_pad"),
                           ("three SNR 0.05 tomograms, the command", [f"tomo_s{s}_0.05" for s in range(3)], "pred"),
                           ("three SNR 0.05 tomograms, pad", [f"tomo_s{s}_0.05" for s in range(3)], "pred_pad"),
                           ("three noise-free tomograms, pad", [f"tomo_s{s}_inf" for s in range(3)], "pred_pad")):
    a, b = [], []
    for tomo in tomos:
        (ra, ka), (rb, kb) = right(old, tomo, pred), right(new, tomo, pred)
        assert ka == kb, f"{tomo}/{pred}: the two runs classified different picks"
        a.append(ra)
        b.append(rb)
    a, b = np.concatenate(a), np.concatenate(b)
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    p = binomtest(only_a, only_a + only_b).pvalue if only_a + only_b else 1.0
    print(f"| {label} | {len(a)} | {100 * a.mean():.1f} % | {100 * b.mean():.1f} % | {only_a} | {only_b} | {p:.3f} |")
