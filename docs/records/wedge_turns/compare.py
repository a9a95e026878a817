"""Validation trajectories and a pick-by-pick test of the fine-tuning views (run from the repository root):

    .venv/bin/python docs/records/wedge_turns/compare.py RUNS > docs/records/wedge_turns/compare.txt

RUNS holds the grids of ``turns.json`` (``RUNS/turns``) and ``so3_repro.json`` (``RUNS/so3_repro``). Prints each
cell's validation accuracy at every validation pass (from its TensorBoard log), then, for the split where both
cells have predictions, an exact McNemar test on the subtomograms where one cell is right and the other wrong.
"""
import sys
from pathlib import Path

import pandas as pd
from scipy.stats import binomtest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

runs = Path(sys.argv[1])
cells = {"so3 (as shipped)": runs / "so3_repro/cells/walkthrough_snr0.05/random/w64_adam_1e-3/f100_r0",
         "d2": runs / "turns/cells/walkthrough_snr0.05/random/w64_d2/f100_r0",
         "d2h": runs / "turns/cells/walkthrough_snr0.05/random/w64_d2h/f100_r0"}

print("| fine-tuning views | validation, epoch 4 / 8 / 12 / 16 | best | training accuracy, last epoch |\n|---|---|---:|---:|")
for name, cell in cells.items():
    events = EventAccumulator(str(next((cell / "eval/finetune").glob("events.out.tfevents*"))))
    events.Reload()
    val = [e.value for e in events.Scalars("val_accuracy")]
    train = events.Scalars("train_accuracy")[-1].value
    print(f"| {name} | {' / '.join(f'{100 * v:.1f}' for v in val)} % | {100 * max(val):.1f} % | {100 * train:.1f} % |")


def mcnemar(split: str, a: str, b: str) -> None:
    pa, pb = (pd.read_csv(cells[k] / f"eval/predictions_{split}.csv").set_index("index") for k in (a, b))
    ok_a, ok_b = pa["label"] == pa["prediction"], (pb["label"] == pb["prediction"]).reindex(pa.index)
    only_a, only_b = int((ok_a & ~ok_b).sum()), int((~ok_a & ok_b).sum())
    p = binomtest(only_a, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
    print(f"| {split} | {len(pa)} | {100 * ok_a.mean():.1f} % | {100 * ok_b.mean():.1f} % | {only_a} | {only_b} | {p:.2g} |")


print(f"\n| split | n | {'so3'} | {'d2h'} | only so3 right | only d2h right | exact McNemar p |\n|---|---:|---:|---:|---:|---:|---:|")
mcnemar("val", "so3 (as shipped)", "d2h")
mcnemar("test", "so3 (as shipped)", "d2h")
print(f"\n| split | n | {'d2'} | {'d2h'} | only d2 right | only d2h right | exact McNemar p |\n|---|---:|---:|---:|---:|---:|---:|")
mcnemar("val", "d2", "d2h")
