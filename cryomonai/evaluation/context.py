"""The context control: does a classifier read the target, or the crowd around it?

A simulated dataset written with ``simulate_dataset(..., context=True)`` holds, next to each
subtomogram, the same box without its target (same neighbours, poses, filters and noise; column
``cryoContextPath``, see :mod:`cryomonai.simulate.subtomogram`). A classifier that only looks at the
target scores chance on those context boxes; one that scores above chance has learnt a context
shortcut (e.g. a shell of neighbours touching the target tells its size).

* :func:`context_table` — the table with ``path`` pointing at the context boxes, so the usual
  inference or readouts run on them unchanged;
* :func:`context_valid` — whether a context-only accuracy is within ``tol`` of chance.

Example:
    >>> context_valid(0.27, n_classes=4), context_valid(0.42, n_classes=4)
    (True, False)
"""

from __future__ import annotations

import os
from pathlib import Path

from cryomonai.errors import CryoDataError
from cryomonai.io.table import ParticleTable, read_particle_table

__all__ = ["CONTEXT_COLUMN", "context_table", "context_valid"]

#: the particle-table column naming each subtomogram's context box (relative to the table's folder)
CONTEXT_COLUMN = "cryoContextPath"


def context_valid(accuracy: float, n_classes: int, tol: float = 0.05) -> bool:
    """Whether a context-only accuracy is within ``tol`` of chance (``1 / n_classes``), either side.

    Far *below* chance fails too: a classifier wrong on context boxes more often than chance
    still reads them.

    Args:
        accuracy: accuracy on the context boxes, a fraction in [0, 1].
        n_classes: number of (balanced) classes.
        tol: allowed distance from chance, a fraction (0.05 = 5 points).

    Example:
        >>> context_valid(0.08, 10), context_valid(0.20, 10, tol=0.05)
        (True, False)
    """
    if n_classes < 2 or not 0.0 <= accuracy <= 1.0:
        raise ValueError(f"context_valid: accuracy={accuracy}, n_classes={n_classes} "
                         "(give an accuracy in [0, 1] and at least 2 classes)")
    return abs(accuracy - 1.0 / n_classes) <= tol


def context_table(table: ParticleTable | str | os.PathLike) -> ParticleTable:
    """A copy of ``table`` whose ``path`` is each particle's context box (labels, splits kept).

    Args:
        table: a particle table with a ``cryoContextPath`` column (or its file), as written by
            ``simulate_dataset(..., context=True)``; relative context paths are resolved against
            the table's folder.

    Raises:
        CryoDataError: the table has no context column (or a row lacks its context path).
    """
    if not isinstance(table, ParticleTable):
        table = read_particle_table(table)
    where = table.source or "particle table"
    if CONTEXT_COLUMN not in table.df or table.df[CONTEXT_COLUMN].isna().any():
        raise CryoDataError(where, f"no {CONTEXT_COLUMN} for every row",
                            "simulate the dataset with context=True (cryomonai simulate --context true)")
    folder = Path(table.source).resolve().parent if table.source is not None else Path.cwd()
    df = table.df.copy()
    df["path"] = [str(folder / p) for p in df[CONTEXT_COLUMN].astype(str)]
    return ParticleTable(df, list(table.class_names), table.source)
