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
   wins (``selection.csv``; :mod:`~cryomonai.experiment.selection`). The test split is not read while
   choosing. With the preset's ``extend_edges``, a choice at the edge of the space in a rate gets a
   recipe beyond it, trained and compared the same way (:mod:`~cryomonai.experiment.edges`);
4. per (dataset, method, label fraction, repeat): ``finetune`` with the chosen recipe on the
   stratified labelled fraction (``label_seed = repeat``, so every method sees the same subset
   within a repeat; nested across fractions), from the repeat's pretrained encoder or from random
   weights (``method = "random"``), with model selection on the validation split
   (``finetune_best.pt``); then ``evaluate`` on the validation split and, once, on the test split
   (accuracy and ``predictions_test.csv``). A selection run of the chosen recipe *is* that
   recipe's repeat-0 cell (it is not trained twice);
5. cheap extra readouts on frozen encoder features of the same labelled subset
   (:mod:`~cryomonai.experiment.cell_readouts`): a linear probe (scored on test, and on validation for the
   checks that must not read test) and k-nearest neighbours — for ``random`` these are the frozen
   *random* features the fine-tuned baseline must beat; the cell's *deployed* classifier is the better
   of probe and fine-tune on validation (:func:`~cryomonai.experiment.checks.deployed`).

Each finished cell appends one row to ``results.csv`` (rewritten atomically), and a rerun skips
the rows already there: the grid resumes. A pretraining or fine-tuning run killed half-way
resumes from its last epoch checkpoint (the bundle's ``--resume``).

The parts, each its own module: the preset (:mod:`~cryomonai.experiment.preset`) → the data
(:mod:`~cryomonai.experiment.data`) → the run graph (:mod:`~cryomonai.experiment.graph`) → the one
scheduler (:mod:`~cryomonai.experiment.scheduler`) handing runs to an executor
(:mod:`~cryomonai.experiment.executors`), which trains them (:mod:`~cryomonai.experiment.training`)
→ the results tables (:mod:`~cryomonai.experiment.tables`) → the report. The grid's folder layout
is :class:`~cryomonai.experiment.layout.GridLayout`. This module is the driver: it chooses the
recipes, evaluates the cells and writes the tables.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd

from cryomonai.evaluation.stats import timing_table
from cryomonai.experiment.cell_readouts import READOUT_COLUMNS, CellReadouts
from cryomonai.experiment.checks import deployed
from cryomonai.experiment.context_control import context_accuracy
from cryomonai.experiment.data import snr
from cryomonai.experiment.executors import ExecutorSpec
from cryomonai.experiment.graph import Job
from cryomonai.experiment.network_keys import encoder_kwargs
from cryomonai.experiment.preset import GridCell, GridPreset, grid_cells, load_preset
from cryomonai.experiment.progress import GridProgress, bundle_seconds, count_runs
from cryomonai.experiment.resume import check_bundle, check_code, check_resume
from cryomonai.experiment.record import GridRecord
from cryomonai.experiment.report_grid import remove_interim_report, write_grid_report, write_interim_report
from cryomonai.experiment.scheduler import make_pool, schedule
from cryomonai.experiment.selection import RecipeChooser
from cryomonai.experiment.tables import RESULT_COLUMNS, SELECTION_COLUMNS, TIMING_COLUMNS, GridTables, cell_key
from cryomonai.experiment.training import GridTrainer, write_text
from cryomonai.io.lock import FolderLock
from cryomonai.logs import ensure_logging
from cryomonai.pipeline import bundle_dir

__all__ = ["GridCell", "GridPreset", "GridRunner", "RESULT_COLUMNS", "SELECTION_COLUMNS", "TIMING_COLUMNS", "grid_cells",
           "load_preset", "run_grid"]

log = logging.getLogger(__name__)


def _where(cell: GridCell, recipe: str) -> tuple[str, str, float, int, str]:  # a fine-tuning's timings.csv columns
    return cell.dataset, cell.method, cell.label_fraction, cell.repeat, recipe


class GridRunner:
    """The grid's driver: runs the cells of ``preset`` under ``out_dir`` (see the module docstring).

    Its parts: ``layout`` (the folder), ``tables`` (the results tables, written only here), ``data``
    (the datasets) and ``trainer`` (the bundle runs, also built by the executors where a run trains).
    """

    def __init__(self, preset: GridPreset, out_dir: str | os.PathLike, progress: bool = True) -> None:
        self.preset, self.progress = preset, progress
        self.trainer = GridTrainer(preset, out_dir, progress)
        self.layout, self.out, self.data = self.trainer.layout, self.trainer.out, self.trainer.data
        self.tables = GridTables(self.layout)
        self.chooser = RecipeChooser(preset, self.tables, self.layout, self.validate)  # on validation, in selection.csv
        # linear probe (test and validation) and kNN, features cached; random features as wide as common says
        self.readouts = CellReadouts(preset.encoder, **encoder_kwargs(preset.common))
        self.tracker: GridProgress | None = None  # the grid's progress while :meth:`run` runs

    def finished(self, kind: str, label: str, seconds: float | None = None, started: float | None = None) -> None:
        """Count a finished run (:meth:`GridProgress.done <cryomonai.experiment.progress.GridProgress.done>`)
        while :meth:`run` runs; else nothing."""
        if self.tracker is not None:
            self.tracker.done(kind, label, seconds, started)

    def collected(self, job: Job, seconds: dict[str, float] | None) -> None:
        """A training run is back from the executor: counted; its time in ``timings.csv`` (None: it was already trained)."""
        self.finished("pretrain" if job.kind == "pretrain" else "finetune", job.label, bundle_seconds(seconds))
        if seconds is None:
            return
        if job.kind == "pretrain":
            dataset, method, seed = job.args
            self.tables.record_timing("pretrain", seconds, dataset, method, repeat=seed - self.preset.seed)
        else:
            self.tables.record_timing("finetune", seconds, *_where(*job.args))

    def prepare_data(self, dataset: str) -> None:
        """Simulate ``dataset`` or check (and split) a user's table, then its cache (:meth:`GridData.prepare
        <cryomonai.experiment.data.GridData.prepare>`); timed once as ``data``."""
        self.data.prepare(dataset, lambda name: self.tables.timed("data", name),
                          lambda name, seconds: self.tables.record_timing("data", {"compute": seconds}, name))

    def validate(self, cell: GridCell, recipe: str) -> float:
        """The validation accuracy of ``cell``'s best model, fine-tuned with ``recipe`` (trained before)."""
        if not self.trainer.finetuned(cell, recipe):
            raise RuntimeError(f"{cell} with recipe {recipe} is evaluated before it is trained (a scheduling bug)")
        val, wf = self.trainer.evaluate(cell, recipe, "val")
        self.tables.record_timing("evaluate_val", wf.seconds, *_where(cell, recipe))
        return val

    def choose_recipe(self, dataset: str, method: str) -> dict[float, str]:
        """The recipe of ``method`` on ``dataset`` per label fraction (rounded to 6 digits), chosen on validation
        (:meth:`RecipeChooser.choose <cryomonai.experiment.selection.RecipeChooser.choose>`)."""
        return self.chooser.choose(dataset, method)

    def extend_recipes(self, dataset: str, method: str) -> list[tuple[GridCell, str]]:
        """After :meth:`choose_recipe`: the selection runs to train before that choice is final, none if it is
        (the preset's ``extend_edges``, :mod:`~cryomonai.experiment.edges`)."""
        runs = self.chooser.extend(dataset, method)
        if runs and self.tracker is not None:
            self.tracker.add("selection", len(runs))
        return runs

    def selection_runs(self, dataset: str, method: str) -> list[tuple[str, float]]:
        """The arm's selection runs as (recipe, fraction), the recipes added at the edge included."""
        return self.chooser.runs(dataset, method)

    def recipe_overrides(self) -> dict[str, dict[str, Any]]:
        """Every recipe's full overrides, the recipes added at the edge included."""
        return self.chooser.recipes()

    def run_cell(self, cell: GridCell, recipe: str) -> dict[str, Any]:
        """Score ``cell`` (fine-tuned with ``recipe``) on validation, then once on test (and the readouts):
        one results row."""
        ds, seed, val = self.data.entry(cell.dataset), self.preset.seed + cell.repeat, self.validate(cell, recipe)
        run = self.layout.cell_run(cell.run_dir(recipe))
        test, wf = self.trainer.evaluate(cell, recipe, "test")
        self.tables.record_timing("evaluate_test", wf.seconds, *_where(cell, recipe))
        n_labelled = len(wf.parser.get_parsed_content("train#labelled"))
        table = wf.parser.get_parsed_content("data#table")
        readouts = dict.fromkeys(READOUT_COLUMNS, math.nan)
        if self.preset.readouts:
            t0 = time.perf_counter()
            readouts = self.readouts(cell.dataset, cell.method, seed, self.trainer.checkpoint(cell), table,
                                     self.layout.cache(cell.dataset), run.labelled_rows)
            self.tables.record_timing("readouts", {"compute": time.perf_counter() - t0}, *_where(cell, recipe))
        row = {
            "dataset": cell.dataset, "snr": snr(ds), "method": cell.method, "label_fraction": cell.label_fraction,
            "repeat": cell.repeat, "seed": seed, "pretrain_seed": seed if cell.method != "random" else math.nan,
            "recipe": recipe, "n_labelled": n_labelled, "best_val_accuracy": val, "test_accuracy": test, **readouts,
            "finetune_seconds": _seconds(run.root),
            "pretrain_seconds": _seconds(self.layout.pretrain_dir(cell.dataset, cell.method, seed)),
            "run_dir": cell.run_dir(recipe), "context_accuracy": context_accuracy(self, cell, recipe),
        }
        return {**row, **deployed(row)}  # probe or fine-tune, chosen on validation

    def record(self) -> GridRecord:
        """What this grid ran and where (:class:`~cryomonai.experiment.record.GridRecord`), for the report."""
        names = [d["name"] for d in self.preset.datasets]
        seeds = [self.preset.seed + r for r in range(int(self.preset.repeats))]
        return GridRecord(
            preset=self.preset, out=self.out, results_path=self.layout.results, selection_path=self.layout.selection,
            timings_path=self.layout.timings,
            tables={n: self.data.table_path(n) for n in names}, caches={n: self.layout.cache(n) for n in names},
            pretrained={(n, m, s): self.layout.pretrain_run(n, m, s).pretrain
                        for n in names for m in self.preset.methods if m != "random" for s in seeds},
        )

    def run(self, max_cells: int | None = None, on_repeat: Callable[[int], None] | None = None) -> pd.DataFrame:
        """Run every cell not yet in ``results.csv`` (at most ``max_cells``); returns all rows.

        The training runs go to the preset's executor through the scheduler
        (:func:`~cryomonai.experiment.scheduler.schedule`; ``workers: 1``: in this process, one after
        another); each method's recipe is chosen (on validation) before any cell of its dataset is
        evaluated on the test split. ``on_repeat(k)`` is called when a cell completes the first ``k``
        repeats of every dataset (k < the preset's ``repeats``): e.g. to write an interim report. The
        runs left are counted and shown as they finish (:mod:`cryomonai.experiment.progress`).
        """
        check_resume(self.layout.preset, self.preset)  # a grid resumes with the preset it started with
        self.out.mkdir(parents=True, exist_ok=True)
        check_bundle(self.layout.bundle_configs, bundle_dir())  # and says so if the bundle's defaults changed
        check_code(self.layout.code)  # or the code that runs them
        write_text(self.layout.preset, json.dumps(asdict(self.preset), indent=2, default=str))
        done = self.tables.done()
        todo = [c for c in grid_cells(self.preset) if cell_key(c) not in done]
        n_todo, todo = len(todo), todo[:max_cells]
        self.tracker = GridProgress(self.preset.name, count_runs(self, todo), state=self.layout.progress)
        try:
            if todo:
                for name in dict.fromkeys(c.dataset for c in todo):
                    self.prepare_data(name)
                pool = make_pool(self.trainer, ExecutorSpec.from_dict(self.preset.executor), self.preset.workers)
                schedule(self, pool, todo, self._evaluator(n_todo, on_repeat))
        finally:
            self.tracker.close()
            self.tracker = None
        return self.tables.results()

    def _evaluator(self, n_todo: int, on_repeat: Callable[[int], None] | None) -> Callable[[GridCell, str], None]:
        """What the scheduler calls for each cell whose training is done: its row, then maybe ``on_repeat``."""
        count = iter(range(1, n_todo + 1))

        def evaluate(cell: GridCell, recipe: str) -> None:
            log.info("[grid %s] cell %d/%d: %s", self.preset.name, next(count), n_todo, cell)
            started = time.monotonic()
            self.tables.add_result(self.run_cell(cell, recipe))
            self.finished("evaluate", f"evaluate {cell}", started=started)
            if on_repeat is not None and (k := self.repeats_done()) < self.preset.repeats and k == cell.repeat + 1:
                on_repeat(k)

        return evaluate

    def repeats_done(self) -> int:
        """The largest ``k`` such that every cell of repeats ``0 … k-1`` (all datasets) is in ``results.csv``."""
        done = self.tables.done()
        missing = [c.repeat for c in grid_cells(self.preset) if cell_key(c) not in done]
        return min(missing, default=int(self.preset.repeats))


def _seconds(run: Path) -> float:  # a run's duration as it wrote it, NaN if it has none
    stamp = run / "seconds.txt"
    return float(stamp.read_text()) if stamp.is_file() else float("nan")


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
        out_dir: the grid's folder (:class:`~cryomonai.experiment.layout.GridLayout`); rerunning resumes.
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
            runner.tables.record_timing("report", {"compute": time.perf_counter() - t0})
            write_text(runner.layout.timing_md,
                       timing_table(runner.tables.timings(), time.perf_counter() - start, preset.workers))
    return results
