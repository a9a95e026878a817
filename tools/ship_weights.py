#!/usr/bin/env python
"""Ship the best SSL encoder of a finished grid (and the classifier fine-tuned from it) with the bundle.

Which pretraining is "best" is decided on the **validation split only**: the SSL method's repeats
(one pretraining seed each) are ranked by the mean best-validation accuracy of their fine-tuned
cells over all label fractions (``results.csv``'s ``best_val_accuracy``); the test split plays no
part. The winner's ``pretrain.pt`` becomes ``<name>`` (kind ``encoder``: its ``encoder.*`` weights)
and its fine-tuned classifier at the largest label fraction becomes ``<name>_classifier``, both
compact copies (:func:`cryomonai.engines.weights.ship_weights`) in ``bundles/cryo_ssl/models/shipped/``,
listed in ``weights.json`` with their SHA-256. The model card (``bundles/cryo_ssl/docs/model_card.md``)
is written by hand from the grid's committed report.

Usage::

    tools/ship_weights.py --grid runs/grid_label_efficiency --method simclr --name simclr_rb3d_bn_16
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from cryomonai.engines.weights import ship_weights
from cryomonai.layout import RunLayout
from cryomonai.pipeline import bundle_dir


def choose(results: pd.DataFrame, method: str) -> tuple[pd.Series, pd.DataFrame]:
    """The chosen repeat's largest-fraction cell and the per-repeat validation ranking (no test column read)."""
    rows = results[results["method"] == method]
    if rows.empty:
        raise SystemExit(f"results.csv has no rows of method {method!r} — fix: give one of {sorted(set(results.method))}")
    ranking = (rows.groupby(["repeat", "pretrain_seed"])["best_val_accuracy"].mean()
               .rename("mean_best_val_accuracy").reset_index().sort_values("mean_best_val_accuracy", ascending=False))
    best = ranking.iloc[0]
    cells = rows[rows["repeat"] == best["repeat"]]
    return cells.loc[cells["label_fraction"].idxmax()], ranking


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grid", required=True, help="a finished grid's folder (results.csv, preset.json, pretrain/, cells/)")
    ap.add_argument("--method", default="simclr", help="the SSL arm to ship")
    ap.add_argument("--name", required=True, help="the shipped encoder's name; the classifier gets '<name>_classifier'")
    ap.add_argument("--bundle_root", default=str(bundle_dir()))
    args = ap.parse_args()

    grid = Path(args.grid)
    results = pd.read_csv(grid / "results.csv")
    preset = json.loads((grid / "preset.json").read_text())
    cell, ranking = choose(results, args.method)
    ds = next(d for d in preset["datasets"] if d["name"] == cell["dataset"])
    seed = int(cell["pretrain_seed"])
    pretrain = RunLayout(grid / "pretrain" / cell["dataset"] / args.method / f"s{seed}").pretrain
    classifier = RunLayout(grid / cell["run_dir"]).finetune_best
    voxel_size = json.loads((grid / "data" / cell["dataset"] / "simulation.json").read_text())["voxel_size_A"]
    common = {"box": int(ds["box"]), "voxel_size": float(voxel_size), "dataset": cell["dataset"],
              "snr": str(ds.get("snr")), "method": args.method, "pretrain_seed": seed, "grid": preset["name"]}
    print(ranking.to_string(index=False))
    enc = ship_weights(args.name, pretrain, "encoder", args.bundle_root, **common)
    clf = ship_weights(f"{args.name}_classifier", classifier, "classifier", args.bundle_root, **common,
                       label_fraction=float(cell["label_fraction"]), recipe=str(cell["recipe"]))
    for p in (enc, clf):
        print(f"{p}: {p.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
