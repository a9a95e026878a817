"""Ship the best SSL encoder of a finished grid (and the classifier fine-tuned from it) with the bundle.

Which pretraining is "best" is decided on the **validation split only**: the SSL method's repeats
(one pretraining seed each) are ranked by the mean best-validation accuracy of their fine-tuned
cells over all label fractions (``results.csv``'s ``best_val_accuracy``); the test split plays no
part. The winner's ``pretrain.pt`` becomes ``<name>`` (kind ``encoder``: its ``encoder.*`` weights)
and its fine-tuned classifier at the largest label fraction becomes ``<name>_classifier``, both
compact copies (:func:`cryomonai.engines.weights.ship_weights`) in ``bundles/cryo_ssl/models/shipped/``,
listed in ``weights.json`` with their SHA-256. The model card (``bundles/cryo_ssl/docs/model_card.md``)
is written by hand from the grid's committed report.

Usage (``cryomonai ship-weights``, :func:`cryomonai.cli.ship_weights`)::

    cryomonai ship-weights --grid runs/grid_label_efficiency --method simclr --name simclr_rb3d_bn_16
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from cryomonai.engines.weights import ship_weights
from cryomonai.errors import ConfigError, CryoDataError
from cryomonai.experiment.layout import GridLayout
from cryomonai.pipeline import bundle_dir

__all__ = ["choose", "ship_best"]


def choose(results: pd.DataFrame, method: str) -> tuple[pd.Series, pd.DataFrame]:
    """The chosen repeat's largest-fraction cell and the per-repeat validation ranking (no test column read)."""
    rows = results[results["method"] == method]
    if rows.empty:
        raise ConfigError("--method", f"results.csv has no rows of method {method!r}",
                          f"give one of {sorted(set(results.method))}")
    ranking = (rows.groupby(["repeat", "pretrain_seed"])["best_val_accuracy"].mean()
               .rename("mean_best_val_accuracy").reset_index().sort_values("mean_best_val_accuracy", ascending=False))
    best = ranking.iloc[0]
    cells = rows[rows["repeat"] == best["repeat"]]
    return cells.loc[cells["label_fraction"].idxmax()], ranking


def ship_best(grid: str | os.PathLike, name: str, method: str = "simclr",
              bundle_root: str | os.PathLike | None = None) -> tuple[pd.DataFrame, list[Path]]:
    """Ship ``method``'s best pretraining of the finished ``grid`` as ``name`` (and its classifier as
    ``<name>_classifier``) into ``bundle_root`` (default: the installed bundle's). Returns the
    per-repeat validation ranking and the two shipped files."""
    layout = GridLayout(grid)
    if not layout.results.is_file() or not layout.preset.is_file():
        raise CryoDataError(layout.root, "has no results.csv and preset.json", "give a finished grid's folder (--grid)")
    results = pd.read_csv(layout.results)
    preset = json.loads(layout.preset.read_text())
    cell, ranking = choose(results, method)
    ds = next(d for d in preset["datasets"] if d["name"] == cell["dataset"])
    seed = int(cell["pretrain_seed"])
    pretrain = layout.pretrain_run(cell["dataset"], method, seed).pretrain
    classifier = layout.cell_run(cell["run_dir"]).finetune_best
    voxel_size = json.loads(layout.simulation(cell["dataset"]).read_text())["voxel_size_A"]
    common = {"box": int(ds["box"]), "voxel_size": float(voxel_size), "dataset": cell["dataset"],
              "snr": str(ds.get("snr")), "method": method, "pretrain_seed": seed, "grid": preset["name"]}
    root = str(bundle_root or bundle_dir())
    enc = ship_weights(name, pretrain, "encoder", root, **common)
    clf = ship_weights(f"{name}_classifier", classifier, "classifier", root, **common,
                       label_fraction=float(cell["label_fraction"]), recipe=str(cell["recipe"]))
    return ranking, [enc, clf]
