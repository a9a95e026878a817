"""The grid's step-budget rule (issue 26): every preset fine-tunes each cell for at least the optimizer
steps of its selection cell.

``finetune.min_steps`` = the steps of the cell at the preset's *budget fraction* — its smallest
selection fraction of at least 10 % (:data:`REFERENCE`; the largest selection fraction if none is):
``ceil(labelled / batch_size) × epochs``, where ``labelled`` is the labelled training subset at that
fraction (per class ``ceil(fraction × n_train)``, as :func:`~cryomonai.data.splits.label_subset`
takes it). The bundle then scales a smaller fraction's epochs up to that many steps
(:func:`~cryomonai.engines.finetune.epoch_scale`); the budget cell and larger ones keep their own.
So a 1 % cell is not starved of steps, and the recipes chosen at the budget fraction train the other
fractions for as long.

A simulated dataset's sizes are in the preset (``n_per_class``, ``split_fractions``, ``classes``), so
the rule's value is written into the preset as a number (the tests check it). A user's table is sized
only when the grid runs: its preset says ``"min_steps": "rule"`` and :func:`resolve_min_steps` counts
the table's training split.

Example:
    >>> train_per_class({"n_per_class": 192, "split_fractions": [0.3125, 0.1041667, 0.5833333]})[:2]
    [60, 60]
    >>> steps_for([60] * 10, fraction=0.1, batch_size=16, epochs=60)  # the cpu preset: 60 labels, 4 batches
    240
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cryomonai.data.splits import _split_counts
from cryomonai.io.table import read_particle_table
from cryomonai.simulate.templates import SHREC_10

__all__ = ["REFERENCE", "budget_fraction", "resolve_min_steps", "step_rule", "steps_for", "train_per_class"]

#: the budget fraction is the smallest selection fraction at least this large
REFERENCE = 0.1
#: the bundle's fine-tuning batch size when neither ``finetune`` nor ``common`` sets one (common.json)
BUNDLE_BATCH_SIZE = 16


def budget_fraction(selection_fractions: Sequence[float]) -> float:
    """The smallest of ``selection_fractions`` that is >= 10 %, else the largest."""
    fractions = sorted(float(f) for f in selection_fractions)
    return next((f for f in fractions if f >= REFERENCE - 1e-9), fractions[-1])


def train_per_class(entry: dict[str, Any]) -> list[int]:
    """The training-split size of each class of a simulated dataset entry (the stratified split's counts)."""
    fractions = np.asarray(entry.get("split_fractions", (0.6, 0.2, 0.2)), dtype=float)
    n_train = int(_split_counts(int(entry["n_per_class"]), fractions)[0])
    return [n_train] * len(entry.get("classes") or SHREC_10)


def steps_for(train_counts: Sequence[int], fraction: float, batch_size: int, epochs: int) -> int:
    """Optimizer steps of a fine-tuning on ``fraction`` of a training split with ``train_counts`` per class."""
    labelled = sum(math.ceil(float(fraction) * n - 1e-9) for n in train_counts)
    return math.ceil(labelled / int(batch_size)) * int(epochs)


def _batch_epochs(preset: Any) -> tuple[int, int]:
    batch = preset.finetune.get("batch_size", preset.common.get("batch_size", BUNDLE_BATCH_SIZE))
    return int(batch), int(preset.finetune["epochs"])


def step_rule(preset: Any) -> int:
    """The rule's ``min_steps`` of ``preset`` (a :class:`~cryomonai.experiment.preset.GridPreset` whose
    datasets are simulated; the largest over its datasets where their sizes differ)."""
    return max(steps_for(train_per_class(ds), budget_fraction(preset.selection_cells()), *_batch_epochs(preset))
               for ds in preset.datasets)


def resolve_min_steps(preset: Any, overrides: dict[str, Any], table: str | Path) -> dict[str, Any]:
    """``overrides`` with ``"min_steps": "rule"`` replaced by the rule's value on ``table``'s training split."""
    if overrides.get("min_steps") != "rule":
        return overrides
    train = read_particle_table(table, check_files=False).df
    counts = train[(train["split"] == "train") & train["label"].notna()]["label"].value_counts()
    batch, epochs = _batch_epochs(preset)
    return {**overrides, "min_steps": steps_for(list(counts), budget_fraction(preset.selection_cells()), batch, epochs)}
