"""A grid's results tables: ``results.csv`` (one row per cell), ``selection.csv`` (the recipe-selection
runs) and ``timings.csv`` (where the time went). Only the grid's driver writes them, a row at a time
(the whole table rewritten atomically); a rerun reads them to skip what is done."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from cryomonai.errors import CryoDataError
from cryomonai.experiment.layout import GridLayout
from cryomonai.io.atomic import atomic_write

__all__ = ["ADDED_RESULT_COLUMNS", "RESULT_COLUMNS", "SELECTION_COLUMNS", "TIMING_COLUMNS", "GridTables", "cell_key"]

#: the columns of ``results.csv``, in order (``context_accuracy``: :mod:`~cryomonai.experiment.context_control`)
RESULT_COLUMNS = [
    "dataset", "snr", "method", "label_fraction", "repeat", "seed", "pretrain_seed", "recipe", "n_labelled",
    "best_val_accuracy",
    "test_accuracy", "linear_probe_accuracy", "knn_accuracy", "finetune_seconds", "pretrain_seconds", "run_dir",
    "val_linear_probe_accuracy",  # the cell's linear probe scored on validation (issue 26's own-probe checks)
    "deployed", "deployed_test_accuracy",  # the better of probe and fine-tune on validation, and its test accuracy
    "context_accuracy",
]
#: columns a ``results.csv`` of an earlier version may lack: read as NaN, written on the next row
ADDED_RESULT_COLUMNS = {"val_linear_probe_accuracy", "deployed", "deployed_test_accuracy", "context_accuracy"}
#: the columns of ``selection.csv``, in order
SELECTION_COLUMNS = ["dataset", "method", "recipe", "label_fraction", "repeat", "pretrain_seed", "best_val_accuracy",
                     "chosen", "run_dir"]
#: the columns of ``timings.csv``: one row per step the grid ran (phases: data, pretrain, finetune,
#: evaluate_val, evaluate_test, evaluate_context, readouts, report); ``setup`` is a bundle run's time outside its engine
TIMING_COLUMNS = ["phase", "dataset", "method", "label_fraction", "repeat", "recipe", "setup_seconds", "compute_seconds"]


def cell_key(cell: Any) -> tuple:
    """A cell (or a ``results.csv`` row) as ``(dataset, method, label fraction rounded, repeat)``."""
    return cell.dataset, cell.method, round(float(cell.label_fraction), 6), int(cell.repeat)


def _read(path: Path, columns: list[str], added: set[str] | frozenset[str] = frozenset()) -> pd.DataFrame:
    """The table at ``path`` with ``columns``; a file without some of ``added`` (an earlier version's) gets them as NaN."""
    if not path.is_file():
        return pd.DataFrame(columns=columns)
    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise CryoDataError(path, f"unreadable ({err})", "move it away to rerun the grid") from None
    if set(columns) - set(df.columns) <= added and list(df.columns) == [c for c in columns if c in set(df.columns)]:
        df = df.reindex(columns=columns)
    if list(df.columns) != columns:
        raise CryoDataError(path, f"has columns {list(df.columns)}, not this version's {columns}",
                            "move it away (or use a new --out) to rerun the grid")
    return df


def _write(path: Path, df: pd.DataFrame) -> None:
    text = df.to_csv(index=False)
    with atomic_write(path, "w", size=len(text.encode())) as fh:
        fh.write(text)


class GridTables:
    """The three tables of the grid at ``layout``."""

    def __init__(self, layout: GridLayout) -> None:
        self.layout = layout

    def results(self) -> pd.DataFrame:
        """The rows written so far (an empty frame with :data:`RESULT_COLUMNS` if none)."""
        return _read(self.layout.results, RESULT_COLUMNS, ADDED_RESULT_COLUMNS)

    def selection(self) -> pd.DataFrame:
        """The recipe-selection runs so far (:data:`SELECTION_COLUMNS`)."""
        return _read(self.layout.selection, SELECTION_COLUMNS)

    def timings(self) -> pd.DataFrame:
        """Where the time went so far (:data:`TIMING_COLUMNS`)."""
        return _read(self.layout.timings, TIMING_COLUMNS)

    def done(self) -> set[tuple]:
        """The :func:`cell_key` of every row of ``results.csv``."""
        return {cell_key(r) for r in self.results().itertuples()}

    def add_result(self, row: dict[str, Any]) -> None:
        """Append one cell's row to ``results.csv``."""
        _append(self.layout.results, RESULT_COLUMNS, row, ADDED_RESULT_COLUMNS)

    def add_selection(self, row: dict[str, Any]) -> None:
        """Append one selection run's row to ``selection.csv``."""
        _append(self.layout.selection, SELECTION_COLUMNS, row)

    def mark_chosen(self, dataset: str, method: str, choice: dict[float, str]) -> None:
        """Mark the chosen recipes of ``method`` on ``dataset`` in ``selection.csv``: ``choice`` maps a label
        fraction (rounded to 6 digits) to its recipe; a selection row is chosen when its recipe is its
        fraction's (rewritten if that changes)."""
        table = self.selection()
        mine = (table["dataset"] == dataset) & (table["method"] == method)
        fractions = table["label_fraction"].astype(float).round(6)
        want = table["recipe"] == fractions.map(choice)
        if not (table.loc[mine, "chosen"].astype(bool) == want[mine]).all():
            table.loc[mine, "chosen"] = want[mine]
            with atomic_write(self.layout.selection, "w") as fh:
                table.to_csv(fh, index=False)

    def tried(self, dataset: str, method: str) -> set[tuple[str, float]]:
        """``(recipe, selection fraction rounded)`` of ``method`` on ``dataset`` already in ``selection.csv``."""
        done = self.selection()
        done = done[(done["dataset"] == dataset) & (done["method"] == method)]
        return {(r.recipe, round(float(r.label_fraction), 6)) for r in done.itertuples()}

    def record_timing(self, phase: str, seconds: dict[str, float], dataset: str = "", method: str = "",
                      label_fraction: float = math.nan, repeat: int | float = math.nan, recipe: str = "") -> None:
        """Append one row to ``timings.csv``: ``seconds`` = ``{"setup": …, "compute": …}`` of one step."""
        _append(self.layout.timings, TIMING_COLUMNS, {
            "phase": phase, "dataset": dataset, "method": method, "label_fraction": label_fraction, "repeat": repeat,
            "recipe": recipe, "setup_seconds": round(seconds.get("setup", 0.0), 3),
            "compute_seconds": round(seconds.get("compute", 0.0), 3)})

    def timed(self, phase: str, dataset: str) -> bool:
        """Whether ``timings.csv`` has a ``phase`` row of ``dataset``."""
        t = self.timings()
        return bool(((t["phase"] == phase) & (t["dataset"] == dataset)).any())


def _append(path: Path, columns: list[str], row: dict[str, Any], added: set[str] | frozenset[str] = frozenset()) -> None:
    _write(path, pd.concat([_read(path, columns, added), pd.DataFrame([row], columns=columns)], ignore_index=True))
