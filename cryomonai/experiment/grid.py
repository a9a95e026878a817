"""The experiment grid of Gupta et al. (2022, §4–5): datasets × methods × label fractions × repeats.

Every cell is a run of the ``cryo_ssl`` bundle (:func:`cryomonai.pipeline.run_bundle`), not a
second training loop:

1. per dataset (an SNR level): the built-in simulator writes it once (the bundle's
   ``ensure_dataset``), split 60/20/20 (stratified);
2. per (dataset, SSL method, repeat): ``pretrain`` on the whole training split without labels,
   with its own seed ``pretrain_seed = seed + repeat``, so the repeats of an SSL arm are
   independent pretrainings and the t-test's variance includes pretraining;
3. per (dataset, method): the fine-tuning **recipe** (a named set of bundle overrides from the
   preset's ``recipes`` search space) is chosen on the **validation split only**: every recipe
   fine-tunes repeat 0 at the ``selection_fractions``; the highest mean best-validation accuracy
   wins (``selection.csv``). The test split is not read while choosing;
4. per (dataset, method, label fraction, repeat): ``finetune`` with the chosen recipe on the
   stratified labelled fraction (``label_seed = repeat``, so every method sees the same subset
   within a repeat; nested across fractions), from the repeat's pretrained encoder or from random
   weights (``method = "random"``), with model selection on the validation split
   (``finetune_best.pt``); then ``evaluate`` on the validation split and, once, on the test split
   (accuracy and ``predictions_test.csv``). A selection run of the chosen recipe *is* that
   recipe's repeat-0 cell (it is not trained twice);
5. cheap extra readouts on frozen encoder features of the same labelled subset
   (:mod:`cryomonai.evaluation.readouts`): a linear probe and k-nearest neighbours — for
   ``random`` these are the frozen *random* features the fine-tuned baseline must beat.

Each finished cell appends one row to ``results.csv`` (rewritten atomically), and a rerun skips
the rows already there: the grid resumes. A pretraining or fine-tuning run killed half-way
resumes from its last epoch checkpoint (the bundle's ``--resume``).

A dataset entry either simulates (``{"name", "snr", "n_per_class", "box", ...}``) or names an
existing particle table (``{"name", "table": "path/to/particles.star"}``, STAR or CSV, a path relative
to the preset file; the paper's Table 2 case): the table and its subtomograms are read in place, never
copied or modified. A table without a ``split`` column gets a stratified split (``split_fractions``,
default 60/20/20, seeded by the preset's seed) saved as ``data/<dataset>/particles.star`` (the user's
rows and columns plus ``split``; volume paths absolute) and reused on resume. ``working_box`` and
``working_voxel_size`` bring volumes of another size to the working one, once, into the cache.

Layout of ``out_dir``::

    data/<dataset>/                      simulated subtomograms + particles.star (a user's table: only the
                                         split it lacked, as particles.star, and the cache; see below)
    pretrain/<dataset>/<method>/s<seed>/ models/pretrain.pt, eval/ (TensorBoard)
    cells/<dataset>/<method>/<recipe>/f<pct>_r<repeat>/   models/finetune_best.pt, eval/predictions_test.csv
    selection.csv                        validation accuracy of every recipe tried, the chosen one marked
    results.csv, preset.json             one row per cell; the preset the grid ran with
    timings.csv, timing.md               where the time went: one row per step run (set-up vs compute)
    interim/                             while running: the report over the repeats finished so far
                                         (table.md with a banner; removed by the final report)
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import sys
import time
import warnings
from dataclasses import asdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cryomonai.data.labelled import read_labelled_rows
from cryomonai.data.splits import stratified_split
from cryomonai.engines.checkpoints import latest_checkpoint
from cryomonai.errors import CryoDataError
from cryomonai.evaluation.readouts import encoder_features, frozen_readouts
from cryomonai.evaluation.stats import timing_table
from cryomonai.experiment.executors import ExecutorSpec, make_pool
from cryomonai.experiment.preset import GridCell, GridPreset, grid_cells, load_preset
from cryomonai.experiment.progress import GridProgress, bundle_seconds, count_runs, run_label
from cryomonai.experiment.record import GridRecord
from cryomonai.experiment.report_grid import remove_interim_report, write_grid_report, write_interim_report
from cryomonai.io.atomic import atomic_write
from cryomonai.io.lock import FolderLock
from cryomonai.io.table import ParticleTable, read_particle_table, write_particle_table
from cryomonai.layout import RunLayout
from cryomonai.logs import ensure_logging
from cryomonai.pipeline import run_bundle
from cryomonai.simulate.prepare import ensure_dataset

__all__ = ["GridCell", "GridPreset", "RESULT_COLUMNS", "SELECTION_COLUMNS", "TIMING_COLUMNS", "grid_cells", "load_preset",
           "run_grid"]

log = logging.getLogger(__name__)

#: the columns of ``results.csv``, in order
RESULT_COLUMNS = [
    "dataset", "snr", "method", "label_fraction", "repeat", "seed", "pretrain_seed", "recipe", "n_labelled",
    "best_val_accuracy",
    "test_accuracy", "linear_probe_accuracy", "knn_accuracy", "finetune_seconds", "pretrain_seconds", "run_dir",
]
#: the columns of ``selection.csv``, in order
SELECTION_COLUMNS = ["dataset", "method", "recipe", "label_fraction", "repeat", "pretrain_seed", "best_val_accuracy",
                     "chosen", "run_dir"]
#: the columns of ``timings.csv``: one row per step the grid ran (phases: data, pretrain, finetune,
#: evaluate_val, evaluate_test, readouts, report); ``setup`` is a bundle run's time outside its engine
TIMING_COLUMNS = ["phase", "dataset", "method", "label_fraction", "repeat", "recipe", "setup_seconds", "compute_seconds"]


def _snr(ds: dict[str, Any]) -> float:
    """The dataset's SNR: inf by default for a simulation, unknown (NaN) for a user's table."""
    return float(ds.get("snr", math.nan if "table" in ds else math.inf))


def _simulation(ds: dict[str, Any], seed: int) -> dict[str, Any]:
    sim = {k: v for k, v in ds.items() if k != "name"}
    sim["snr"] = _snr(ds)
    sim.setdefault("seed", seed)
    return sim


def _write_text(path: Path, text: str) -> None:
    with atomic_write(path, "w") as fh:
        fh.write(text)


def _resumable(ckpt_dir: Path, prefix: str) -> bool:
    """Whether a run stopped half-way left an epoch checkpoint to resume from."""
    return ckpt_dir.is_dir() and latest_checkpoint(ckpt_dir, prefix) is not None


class GridRunner:
    """Runs the cells of ``preset`` under ``out_dir``; see the module docstring."""

    def __init__(self, preset: GridPreset, out_dir: str | os.PathLike, progress: bool = True) -> None:
        self.preset, self.out, self.progress = preset, Path(out_dir).resolve(), progress
        self.results_path = self.out / "results.csv"
        self.selection_path = self.out / "selection.csv"
        self.timings_path = self.out / "timings.csv"
        self._features: dict[tuple[str, str, int], np.ndarray] = {}
        self._pretrain_seconds: dict[tuple[str, str, int], float] = {}
        self._prepared: set[str] = set()
        self._table_paths: dict[str, Path] = {}
        self._warned: set[str] = set()
        self.tracker: GridProgress | None = None  # the grid's progress while :meth:`run` runs

    def finished(self, kind: str, label: str, seconds: float | None = None, started: float | None = None) -> None:
        """Count a finished run (:meth:`GridProgress.done <cryomonai.experiment.progress.GridProgress.done>`)
        while :meth:`run` runs; else nothing."""
        if self.tracker is not None:
            self.tracker.done(kind, label, seconds, started)

    # -- bookkeeping ----------------------------------------------------------------------------
    def _table(self, path: Path, columns: list[str]) -> pd.DataFrame:
        if not path.is_file():
            return pd.DataFrame(columns=columns)
        try:
            df = pd.read_csv(path)
        except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
            raise CryoDataError(path, f"unreadable ({err})", "move it away to rerun the grid") from None
        if list(df.columns) != columns:
            raise CryoDataError(path, f"has columns {list(df.columns)}, not this version's {columns}",
                                "move it away (or use a new --out) to rerun the grid")
        return df

    def results(self) -> pd.DataFrame:
        """The rows written so far (an empty frame with :data:`RESULT_COLUMNS` if none)."""
        return self._table(self.results_path, RESULT_COLUMNS)

    def selection(self) -> pd.DataFrame:
        """The recipe-selection runs so far (``selection.csv``; :data:`SELECTION_COLUMNS`)."""
        return self._table(self.selection_path, SELECTION_COLUMNS)

    def timings(self) -> pd.DataFrame:
        """Where the time went so far (``timings.csv``; :data:`TIMING_COLUMNS`)."""
        return self._table(self.timings_path, TIMING_COLUMNS)

    def record_timing(self, phase: str, seconds: dict[str, float], dataset: str = "", method: str = "",
                      label_fraction: float = math.nan, repeat: int | float = math.nan, recipe: str = "") -> None:
        """Append one row to ``timings.csv``: ``seconds`` = ``{"setup": …, "compute": …}`` of one step."""
        self._append(self.timings_path, TIMING_COLUMNS, {
            "phase": phase, "dataset": dataset, "method": method, "label_fraction": label_fraction, "repeat": repeat,
            "recipe": recipe, "setup_seconds": round(seconds.get("setup", 0.0), 3),
            "compute_seconds": round(seconds.get("compute", 0.0), 3)})

    @staticmethod
    def _cell_key(cell: Any) -> tuple:
        """A cell (or a ``results.csv`` row) as ``(dataset, method, label fraction rounded, repeat)``."""
        return cell.dataset, cell.method, round(float(cell.label_fraction), 6), int(cell.repeat)

    def _done(self, df: pd.DataFrame) -> set[tuple]:
        return {self._cell_key(r) for r in df.itertuples()}

    def _append(self, path: Path, columns: list[str], row: dict[str, Any]) -> None:
        df = pd.concat([self._table(path, columns), pd.DataFrame([row], columns=columns)], ignore_index=True)
        text = df.to_csv(index=False)
        with atomic_write(path, "w", size=len(text.encode())) as fh:
            fh.write(text)

    def data_dir(self, dataset: str) -> Path:
        """The folder of ``dataset``'s particles.star (simulated, or a split made for a user's table) and cache."""
        return self.out / "data" / dataset

    def table_path(self, dataset: str) -> Path:
        """The particle table the bundle runs of ``dataset`` read: the user's own if it has a split, else
        the split copy in :meth:`data_dir` (and for a simulation, the simulated one there)."""
        if dataset not in self._table_paths:
            ds = self._dataset(dataset)
            if "table" in ds and Path(ds["table"]).is_file() and _has_split(Path(ds["table"])):
                self._table_paths[dataset] = Path(ds["table"])
            else:
                self._table_paths[dataset] = self.data_dir(dataset) / "particles.star"
        return self._table_paths[dataset]

    def cache_path(self, dataset: str) -> str:
        """The bundle's float16 volume cache of ``dataset`` (``cache_path`` of ``common.json``)."""
        return str(self.data_dir(dataset) / "cache" / "volumes.npy")

    def pretrain_dir(self, dataset: str, method: str, pretrain_seed: int) -> Path:
        """The folder of one pretraining run (``models/pretrain.pt``, ``eval/``, ``seconds.txt``)."""
        return self.out / "pretrain" / dataset / method / f"s{pretrain_seed}"

    def _common(self, ds: dict[str, Any], seed: int) -> dict[str, Any]:
        data = self.data_dir(ds["name"])
        if "table" in ds:
            where = dict(dataset_table=str(self.table_path(ds["name"])), simulate=False, simulation={},
                         working_box=ds.get("working_box"), working_voxel_size=ds.get("working_voxel_size"))
        else:
            where = dict(simulation=_simulation(ds, self.preset.seed))
        return dict(
            dataset_dir=str(data), cache_path=self.cache_path(ds["name"]), seed=seed, progress=self.progress,
            **where, **copy.deepcopy(self.preset.common),
        )

    def _dataset(self, name: str) -> dict[str, Any]:
        return next(d for d in self.preset.datasets if d["name"] == name)

    # -- the steps ------------------------------------------------------------------------------
    def pretrained(self, dataset: str, method: str, pretrain_seed: int) -> bool:
        """Whether that pretraining is done (its ``pretrain.pt`` is written)."""
        return RunLayout(self.pretrain_dir(dataset, method, pretrain_seed)).pretrain.is_file()

    def finetuned(self, cell: GridCell, recipe: str) -> bool:
        """Whether ``cell``'s fine-tuning with ``recipe`` is done (its final checkpoint is written)."""
        return RunLayout(self.out / cell.run_dir(recipe)).finetune_final.is_file()

    def train_pretraining(self, dataset: str, method: str, pretrain_seed: int,
                          distributed: bool = False) -> dict[str, float] | None:
        """Pretrain ``method`` on ``dataset`` with ``pretrain_seed`` unless done (a half-done run resumes).

        ``distributed``: this process is one rank of a DDP pretraining (the bundle's
        ``multi_gpu_pretrain.json``; ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` … set by the caller).

        Returns the bundle run's ``{"setup", "compute"}`` seconds, or None if it was already done;
        records nothing (the caller does: a worker process must not write the grid's tables).
        """
        run = RunLayout(self.pretrain_dir(dataset, method, pretrain_seed))
        if self.pretrained(dataset, method, pretrain_seed):
            return None
        ds = self._dataset(dataset)
        overrides = {**copy.deepcopy(self.preset.pretrain), **copy.deepcopy(self.preset.pretrain_by_method.get(method, {}))}
        t0 = time.perf_counter()
        wf = run_bundle(
            "pretrain", method, self.preset.encoder, resume=_resumable(run.models, "pretrain"), distributed=distributed,
            **run.bundle_paths(),
            **{**self._common(ds, pretrain_seed), **overrides},
        )
        _write_text(run.root / "seconds.txt", f"{time.perf_counter() - t0:.1f}\n")
        return wf.seconds

    def pretrained_checkpoint(self, ds: dict[str, Any], method: str, pretrain_seed: int) -> str:
        """Pretrain ``method`` on dataset ``ds`` with ``pretrain_seed`` unless done; the checkpoint ("" for random)."""
        if method == "random":
            return ""
        seconds = self.train_pretraining(ds["name"], method, pretrain_seed)
        if seconds is not None:
            self.record_timing("pretrain", seconds, ds["name"], method, repeat=pretrain_seed - self.preset.seed)
            self.finished("pretrain", run_label("pretrain", ds["name"], method, pretrain_seed), bundle_seconds(seconds))
        run = RunLayout(self.pretrain_dir(ds["name"], method, pretrain_seed))
        key = (ds["name"], method, pretrain_seed)
        if key not in self._pretrain_seconds:
            stamp = run.root / "seconds.txt"
            self._pretrain_seconds[key] = float(stamp.read_text()) if stamp.is_file() else float("nan")
        return str(run.pretrain)

    def _keys(self, cell: GridCell, recipe: str) -> dict[str, Any]:
        """The bundle overrides that locate ``cell``'s run with ``recipe`` (data, labelled subset, folders, seed)."""
        run = RunLayout(self.out / cell.run_dir(recipe))
        seed = self.preset.seed + cell.repeat
        return dict(label_fraction=cell.label_fraction, label_seed=cell.repeat, **run.bundle_paths(),
                    **self._common(self._dataset(cell.dataset), seed))

    def train_finetune(self, cell: GridCell, recipe: str) -> dict[str, float] | None:
        """Fine-tune ``cell`` with ``recipe`` unless done (a half-done run resumes); its SSL pretraining must
        be done. Returns the bundle run's seconds, or None if it was already done; records nothing."""
        if self.finetuned(cell, recipe):
            return None
        run = RunLayout(self.out / cell.run_dir(recipe))
        pretrained = ""
        if cell.method != "random":
            pretrained = str(RunLayout(self.pretrain_dir(cell.dataset, cell.method, self.preset.seed + cell.repeat)).pretrain)
            if not Path(pretrained).is_file():
                raise CryoDataError(pretrained, f"missing: {cell} needs its pretraining first",
                                    "run the grid (it pretrains before it fine-tunes)")
        t0 = time.perf_counter()
        wf = run_bundle(
            "finetune", encoder=self.preset.encoder, pretrained=pretrained, resume=_resumable(run.models, "finetune"),
            **{**self._keys(cell, recipe), **self.preset.recipe_overrides()[recipe]},
        )
        _write_text(run.root / "seconds.txt", f"{time.perf_counter() - t0:.2f}\n")
        return wf.seconds

    def _finetune(self, cell: GridCell, recipe: str) -> tuple[RunLayout, dict[str, Any], float]:
        """Fine-tune ``cell`` with ``recipe`` unless done and score its best model on the validation split.

        Returns the run folder, the bundle overrides that locate it, and the validation accuracy.
        """
        self.pretrained_checkpoint(self._dataset(cell.dataset), cell.method, self.preset.seed + cell.repeat)
        seconds = self.train_finetune(cell, recipe)
        if seconds is not None:
            self.record_timing("finetune", seconds, *self._where(cell, recipe))
            self.finished("finetune", run_label("finetune", cell, recipe), bundle_seconds(seconds))
        keys = self._keys(cell, recipe)
        wf = run_bundle("evaluate", encoder=self.preset.encoder, **{"validate#split": "val"}, **keys)
        self.record_timing("evaluate_val", wf.seconds, *self._where(cell, recipe))
        return RunLayout(self.out / cell.run_dir(recipe)), keys, _metric(wf)

    @staticmethod
    def _where(cell: GridCell, recipe: str) -> tuple[str, str, float, int, str]:
        return cell.dataset, cell.method, cell.label_fraction, cell.repeat, recipe

    def tried_recipes(self, dataset: str, method: str) -> set[tuple[str, float]]:
        """``(recipe, selection fraction rounded)`` of ``method`` on ``dataset`` already in ``selection.csv``."""
        done = self.selection()
        done = done[(done["dataset"] == dataset) & (done["method"] == method)]
        return {(r.recipe, round(float(r.label_fraction), 6)) for r in done.itertuples()}

    def choose_recipe(self, dataset: str, method: str) -> str:
        """The recipe of ``method`` on ``dataset``: the only one, or the best on the validation split.

        Every recipe fine-tunes repeat 0 at each selection fraction (resumable, rows in
        ``selection.csv``); the highest mean best-validation accuracy wins, ties to the first declared.
        """
        recipes = list(self.preset.recipe_overrides())
        if len(recipes) == 1:
            return recipes[0]
        seed = self.preset.seed
        have = self.tried_recipes(dataset, method)
        for recipe in recipes:
            for frac in self.preset.selection_cells():
                if (recipe, round(frac, 6)) in have:
                    continue
                cell = GridCell(dataset, method, frac, 0)
                log.info("[grid %s] recipe selection: %s recipe=%s", self.preset.name, cell, recipe)
                _, _, val = self._finetune(cell, recipe)
                self._append(self.selection_path, SELECTION_COLUMNS, {
                    "dataset": dataset, "method": method, "recipe": recipe, "label_fraction": frac, "repeat": 0,
                    "pretrain_seed": seed if method != "random" else math.nan, "best_val_accuracy": val,
                    "chosen": False, "run_dir": cell.run_dir(recipe)})
        table = self.selection()
        mine = (table["dataset"] == dataset) & (table["method"] == method)
        # rounded, so that equal accuracies tie exactly (0.155 + 0.29 ≠ 0.165 + 0.28 in floating point)
        means = table[mine].groupby("recipe", sort=False)["best_val_accuracy"].mean().round(9)
        chosen = max(recipes, key=lambda r: (means.get(r, -1.0), -recipes.index(r)))
        if not table.loc[mine & (table["recipe"] == chosen), "chosen"].astype(bool).all():
            table.loc[mine, "chosen"] = table.loc[mine, "recipe"] == chosen
            with atomic_write(self.selection_path, "w") as fh:
                table.to_csv(fh, index=False)
        return chosen

    def run_cell(self, cell: GridCell, recipe: str | None = None) -> dict[str, Any]:
        """Fine-tune with ``recipe`` (default: :meth:`choose_recipe`), select on validation, evaluate once
        on test (and the readouts): one results row."""
        recipe = recipe or self.choose_recipe(cell.dataset, cell.method)
        ds = self._dataset(cell.dataset)
        seed = self.preset.seed + cell.repeat
        run, keys, val = self._finetune(cell, recipe)
        stamp = run.root / "seconds.txt"
        seconds = float(stamp.read_text()) if stamp.is_file() else float("nan")
        wf = run_bundle("evaluate", encoder=self.preset.encoder, **{"validate#split": "test"}, **keys)
        self.record_timing("evaluate_test", wf.seconds, *self._where(cell, recipe))
        test = _metric(wf)
        n_labelled = len(wf.parser.get_parsed_content("train#labelled"))
        table = wf.parser.get_parsed_content("data#table")
        pretrained = self.pretrained_checkpoint(ds, cell.method, seed)
        probe = knn = float("nan")
        if self.preset.readouts:
            t0 = time.perf_counter()
            probe, knn = self._readouts(cell, pretrained, table, seed, run.labelled_rows)
            self.record_timing("readouts", {"compute": time.perf_counter() - t0}, *self._where(cell, recipe))
        return {
            "dataset": cell.dataset, "snr": _snr(ds), "method": cell.method, "label_fraction": cell.label_fraction,
            "repeat": cell.repeat, "seed": seed, "pretrain_seed": seed if cell.method != "random" else math.nan,
            "recipe": recipe, "n_labelled": n_labelled, "best_val_accuracy": val,
            "test_accuracy": test, "linear_probe_accuracy": probe, "knn_accuracy": knn,
            "finetune_seconds": seconds,
            "pretrain_seconds": self._pretrain_seconds.get((cell.dataset, cell.method, seed), float("nan")),
            "run_dir": cell.run_dir(recipe),
        }

    def _readouts(self, cell: GridCell, pretrained: str, table: Any, seed: int, rows: Path) -> tuple[float, float]:
        # the random encoder is seeded by the cell's seed, a pretrained one by its pretraining seed (the same number)
        key = (cell.dataset, cell.method, seed)
        if key not in self._features:
            cache = self.cache_path(cell.dataset)
            kept = {k: v for k, v in self._features.items() if k[0] == cell.dataset}  # one dataset at a time
            self._features = {**kept, key: encoder_features(table, cache, self.preset.encoder, pretrained, seed)}
        return frozen_readouts(self._features[key], table, read_labelled_rows(rows))

    def record(self) -> GridRecord:
        """What this grid ran and where (:class:`~cryomonai.experiment.record.GridRecord`), for the report."""
        names = [d["name"] for d in self.preset.datasets]
        seeds = [self.preset.seed + r for r in range(int(self.preset.repeats))]
        return GridRecord(
            preset=self.preset, out=self.out, results_path=self.results_path, selection_path=self.selection_path,
            timings_path=self.timings_path,
            tables={n: self.table_path(n) for n in names}, caches={n: Path(self.cache_path(n)) for n in names},
            pretrained={(n, m, s): RunLayout(self.pretrain_dir(n, m, s)).pretrain
                        for n in names for m in self.preset.methods if m != "random" for s in seeds},
        )

    def prepare_data(self, dataset: str) -> None:
        """Simulate ``dataset``, or check a user's table and split it if it has no split; then build the
        volume cache (at the working size). Done once (timed as ``data``); later calls only check."""
        ds = self._dataset(dataset)
        if "table" in ds:
            self._check_fractions(dataset, self._split_table(ds))
        table = self.table_path(dataset)
        if table.is_file() and Path(self.cache_path(dataset)).is_file() and dataset in self._prepared:
            return
        t0 = time.perf_counter()
        if "table" in ds:
            working = {"working_box": ds.get("working_box"), "working_voxel_size": ds.get("working_voxel_size")}
            try:
                ensure_dataset(table, self.cache_path(dataset), False, self.progress, **working)
            except CryoDataError as err:
                raise CryoDataError(f"grid dataset {dataset!r}", f"{err.where}: {err.problem}", err.fix) from None
        else:
            ensure_dataset(table, self.cache_path(dataset), True, self.progress, **_simulation(ds, self.preset.seed))
        if not (dataset in self._prepared or self._timed_data(dataset)):
            self.record_timing("data", {"compute": time.perf_counter() - t0}, dataset)
        self._prepared.add(dataset)

    def _timed_data(self, dataset: str) -> bool:
        t = self.timings()
        return bool(((t["phase"] == "data") & (t["dataset"] == dataset)).any())

    def _split_table(self, ds: dict[str, Any]) -> ParticleTable:
        """The user's table, checked; if it has no split column, the stratified split made (once) into data_dir."""
        name, source = ds["name"], Path(ds["table"])
        entry = f"grid dataset {name!r} ({source})"
        if not source.is_file():
            raise CryoDataError(entry, "table not found", "fix the path ('table' in the preset or --dataset_table)")
        try:
            table = read_particle_table(source, require_labels=True)
        except CryoDataError as err:
            raise CryoDataError(f"grid dataset {name!r}", f"{err.where}: {err.problem}", err.fix) from None
        if table.df["path"].isna().any():
            raise CryoDataError(entry, "is a coordinate table (no subtomogram paths)",
                                "extract the subtomograms first (cryomonai extract) and point at its table")
        splits = table.df["split"]
        if splits.notna().any():
            if splits.isna().any():
                raise CryoDataError(entry, f"{int(splits.isna().sum())} rows have no split",
                                    "give every row a split (train/val/test), or drop the column to split here")
            return table
        target = self.data_dir(name) / "particles.star"
        if target.is_file():
            made = read_particle_table(target)
            if len(made) != len(table) or list(made.df["path"]) != list(table.df["path"]):
                raise CryoDataError(target, f"is the split of another table than {source}",
                                    f"remove {self.data_dir(name)} to split the new table (or use a new --out)")
            return made
        fractions = ds.get("split_fractions", [0.6, 0.2, 0.2])
        df = table.df.copy()
        df["split"] = stratified_split(df["label"].to_numpy(), fractions, seed=self.preset.seed)
        target.parent.mkdir(parents=True, exist_ok=True)
        write_particle_table(ParticleTable(df, list(table.class_names)), target)
        return read_particle_table(target)

    def _check_fractions(self, dataset: str, table: ParticleTable) -> None:
        """Warn (once) about classes too small for a label fraction: they keep one example (more than the fraction)."""
        if dataset in self._warned:
            return
        self._warned.add(dataset)
        train = table.df[table.df["split"] == "train"]
        counts = train["label"].value_counts()
        for name in table.class_names:
            n = int(counts.get(name, 0))
            if n == 0:
                warnings.warn(f"grid dataset {dataset!r}: class {name!r} has no labelled training particles; "
                              "it is kept, but no arm can learn it", UserWarning, stacklevel=3)
                continue
            short = [f for f in self.preset.label_fractions if n * float(f) < 1]
            if short:
                warnings.warn(f"grid dataset {dataset!r}: class {name!r} has {n} labelled training particles; at "
                              f"{', '.join(f'{100 * float(f):g} %' for f in short)} labels it keeps 1 (kept, more than "
                              "the fraction)", UserWarning, stacklevel=3)

    # -- the grid -------------------------------------------------------------------------------
    def run(self, max_cells: int | None = None, on_repeat: Callable[[int], None] | None = None) -> pd.DataFrame:
        """Run every cell not yet in ``results.csv`` (at most ``max_cells``); returns all rows.

        Per dataset, each method's recipe is chosen (on validation) before any of its cells is
        evaluated on the test split. With the preset's ``workers`` > 1 the training runs happen in
        worker processes (:func:`cryomonai.experiment.parallel.run_parallel`), the rest as here. ``on_repeat(k)`` is called when a cell completes the first
        ``k`` repeats of every dataset (k < the preset's ``repeats``): e.g. to write an interim report.
        The runs left are counted and shown as they finish (:mod:`cryomonai.experiment.progress`).
        """
        self.out.mkdir(parents=True, exist_ok=True)
        _write_text(self.out / "preset.json", json.dumps(asdict(self.preset), indent=2, default=str))
        done = self._done(self.results())
        todo = [c for c in grid_cells(self.preset) if self._cell_key(c) not in done]
        n_todo, todo = len(todo), todo[:max_cells]
        self.tracker = GridProgress(self.preset.name, count_runs(self, todo))
        try:
            self._run(todo, n_todo, on_repeat)
        finally:
            self.tracker.close()
            self.tracker = None
        return self.results()

    def _run(self, todo: list[GridCell], n_todo: int, on_repeat: Callable[[int], None] | None) -> None:
        """:meth:`run`'s cells ``todo`` (``n_todo`` left in all): serially here, or through a pool."""
        count = iter(range(1, n_todo + 1))

        def evaluate(cell: GridCell, recipe: str) -> None:
            log.info("[grid %s] cell %d/%d: %s", self.preset.name, next(count), n_todo, cell)
            started = time.monotonic()
            self._append(self.results_path, RESULT_COLUMNS, self.run_cell(cell, recipe))
            self.finished("evaluate", f"evaluate {cell}", started=started)
            if on_repeat is not None and (k := self.repeats_done()) < self.preset.repeats and k == cell.repeat + 1:
                on_repeat(k)

        spec = ExecutorSpec.from_dict(self.preset.executor)
        if (self.preset.workers > 1 or spec.kind != "local") and todo:
            from cryomonai.experiment.parallel import run_parallel  # it builds on this class

            for name in dict.fromkeys(c.dataset for c in todo):
                self.prepare_data(name)
            run_parallel(self, make_pool(self, spec, self.preset.workers), todo, evaluate)
            return
        chosen: dict[tuple[str, str], str] = {}
        for cell in todo:
            self.prepare_data(cell.dataset)
            if (cell.dataset, cell.method) not in chosen:
                for method in self.preset.methods:  # all of this dataset's selections first
                    chosen[(cell.dataset, method)] = self.choose_recipe(cell.dataset, method)
            evaluate(cell, chosen[(cell.dataset, cell.method)])

    def repeats_done(self) -> int:
        """The largest ``k`` such that every cell of repeats ``0 … k-1`` (all datasets) is in ``results.csv``."""
        done = self._done(self.results())
        missing = [c.repeat for c in grid_cells(self.preset) if self._cell_key(c) not in done]
        return min(missing, default=int(self.preset.repeats))


def _has_split(path: Path) -> bool:
    """Whether the particle table at ``path`` gives a split on some row (``split`` / ``cryoSplit``)."""
    return bool(read_particle_table(path, check_files=False).df["split"].notna().any())


def _metric(wf: Any) -> float:
    """The accuracy of an ``evaluate`` run."""
    return float(wf.parser.get_parsed_content("validate#evaluator").state.metrics["accuracy"])


def run_grid(
    preset: str | os.PathLike | GridPreset = "cpu",
    out_dir: str | os.PathLike = "runs/grid",
    report: bool = True,
    progress: bool = True,
    max_cells: int | None = None,
    **overrides: Any,
) -> pd.DataFrame:
    """Run (or resume) a grid and write its report into ``out_dir``.

    Args:
        preset: a preset name (``"cpu"``, ``"paper"``), a preset JSON path, or a :class:`GridPreset`.
        out_dir: the grid's folder (see the module docstring); rerunning resumes.
        report: write the report (:func:`cryomonai.experiment.report_grid.write_grid_report`) when done.
        progress: per-run progress bars of the bundle runs (here and in the pool's workers), on a terminal
            only. The grid's own bar over all its runs, or on a log one line per finished run with
            the ETA (:mod:`cryomonai.experiment.progress`), shows either way.
        max_cells: stop after this many new cells (the report is written only when all are done).
        overrides: top-level preset keys to replace (e.g. ``repeats=1``).

    Returns:
        ``results.csv`` as a DataFrame.
    """
    if not isinstance(preset, GridPreset):
        preset = load_preset(preset, **overrides)
    ensure_logging()  # the grid's lines on stderr, unless the application set up its own logging
    runner = GridRunner(preset, out_dir, progress and sys.stderr.isatty())  # no per-run bars in a log file
    start = time.perf_counter()

    def interim(k: int) -> None:
        table = write_interim_report(runner.record(), k)
        log.info("[grid %s] %d of %d repeats done: interim report %s", preset.name, k, preset.repeats, table)

    with FolderLock(runner.out):  # one grid per folder: a second one fails at once, naming this one's pid
        results = runner.run(max_cells, on_repeat=interim if report else None)
        n_cells = sum(1 for _ in grid_cells(preset))
        if report and len(results) >= n_cells:
            t0 = time.perf_counter()
            write_grid_report(runner.record())
            remove_interim_report(runner.out)
            runner.record_timing("report", {"compute": time.perf_counter() - t0})
            _write_text(runner.out / "timing.md",
                        timing_table(runner.timings(), time.perf_counter() - start, preset.workers))
    return results
