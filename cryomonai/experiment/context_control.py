"""The grid's context control (issue 26): each cell's fine-tuned model scored on its dataset's
context-only test boxes.

A simulated dataset entry with ``"context_control": true`` is simulated with
``simulate_dataset(..., context=True)``: every subtomogram also has its box without the target
(same neighbours, noise and filters; :mod:`cryomonai.evaluation.context`). After a cell is scored
on the test split, the same bundle ``evaluate`` run scores its best model on a *context copy* of the
test split — the test rows with ``path`` pointing at their context boxes
(:func:`~cryomonai.evaluation.context.context_table`), written once with its own volume cache under
``data/<dataset>/context/`` — and the accuracy becomes ``results.csv``'s ``context_accuracy`` (NaN
for a dataset without the control). A classifier that reads the target, not the crowd around it,
scores chance there; the report says whether each dataset's benchmark is valid
(:mod:`~cryomonai.experiment.report_context`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from cryomonai.data.dataset import build_volume_cache
from cryomonai.evaluation.context import context_table
from cryomonai.io.table import ParticleTable, write_particle_table

__all__ = ["CONTEXT_KEY", "context_accuracy", "has_context_control", "write_context_split"]

#: the dataset-entry key that asks for the context control (simulated datasets only)
CONTEXT_KEY = "context_control"
#: the timings.csv phase of the context-only evaluations
PHASE = "evaluate_context"


def has_context_control(entry: dict[str, Any]) -> bool:
    """Whether a preset's dataset entry asks for the context control."""
    return bool(entry.get(CONTEXT_KEY, False))


def write_context_split(table: str | Path, out_table: str | Path, cache: str | Path, split: str = "test",
                        progress: bool = False) -> Path:
    """Write (once) the context copy of ``table``'s ``split`` rows to ``out_table`` and build its volume cache.

    Args:
        table: a particle table simulated with ``context=True`` (a ``cryoContextPath`` column).
        out_table: where the copy goes (STAR); kept if it exists with the same number of rows.
        cache: its float16 volume cache (the bundle's ``cache_path``).
        split: the rows kept (labels, classes and split kept; ``path`` = the context box).
        progress: progress bar of the cache build.

    Returns:
        ``out_table``.
    """
    out_table = Path(out_table)
    if not out_table.is_file():
        full = context_table(table)
        rows = full.df[full.df["split"] == split].reset_index(drop=True)
        out_table.parent.mkdir(parents=True, exist_ok=True)
        write_particle_table(ParticleTable(rows, list(full.class_names)), out_table)
    build_volume_cache(out_table, cache, progress=progress)
    return out_table


def context_accuracy(runner: Any, cell: Any, recipe: str) -> float:
    """``cell``'s best model (fine-tuned with ``recipe``) on the context-only test boxes of its dataset.

    ``runner`` is the grid's driver (:class:`~cryomonai.experiment.grid.GridRunner`: its ``data``,
    ``layout``, ``trainer`` and ``tables``). The run is the bundle's ``evaluate`` on the context copy
    (:func:`write_context_split`), its predictions in the cell's ``eval_context/``; timed as
    ``evaluate_context``. NaN where the dataset has no context control.
    """
    if not has_context_control(runner.data.entry(cell.dataset)):
        return math.nan
    folder = runner.layout.data_dir(cell.dataset) / "context"
    table = write_context_split(runner.data.table_path(cell.dataset), folder / "particles.star",
                                folder / "cache" / "volumes.npy")
    run = runner.layout.cell_run(cell.run_dir(recipe))
    accuracy, wf = runner.trainer.evaluate(
        cell, recipe, "test", dataset_table=str(table), cache_path=str(folder / "cache" / "volumes.npy"),
        simulate=False, simulation={}, output_dir=str(run.root / "eval_context"))
    runner.tables.record_timing(PHASE, wf.seconds, cell.dataset, cell.method, cell.label_fraction, cell.repeat, recipe)
    return accuracy
