"""A grid cell's readouts on frozen encoder features (:mod:`cryomonai.evaluation.readouts`), features cached.

The encoder's features of every row of a dataset are computed once per (dataset, method, seed) — the
random encoder seeded by the cell's seed, a pretrained one by its pretraining seed (the same number) —
and reused by every label fraction of that repeat. The linear probe is fit once on the cell's labelled
rows and scored on test (``linear_probe_accuracy``) and on validation (``val_linear_probe_accuracy``,
for the checks that must not read test); kNN on test (``knn_accuracy``).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from cryomonai.data.labelled import read_labelled_rows
from cryomonai.evaluation.probes import probe_accuracies
from cryomonai.evaluation.readouts import encoder_features, knn_accuracy

__all__ = ["READOUT_COLUMNS", "CellReadouts"]

#: the results columns of :meth:`CellReadouts.__call__`
READOUT_COLUMNS = ("linear_probe_accuracy", "val_linear_probe_accuracy", "knn_accuracy")


class CellReadouts:
    """The readouts of the grid's cells with ``encoder`` (built with ``encoder_kwargs``, on top of a pretrained
    checkpoint's own), the features of one dataset at a time kept."""

    def __init__(self, encoder: str, **encoder_kwargs: Any) -> None:
        self.encoder, self.encoder_kwargs = encoder, encoder_kwargs
        self._features: dict[tuple[str, str, int], np.ndarray] = {}

    def __call__(self, dataset: str, method: str, seed: int, pretrained: str, table: Any, cache: str | os.PathLike,
                 labelled_rows: str | os.PathLike) -> dict[str, float]:
        """:data:`READOUT_COLUMNS` of one cell: its ``labelled_rows.csv``, the ``pretrained`` checkpoint ("" = random
        init seeded with ``seed``), the dataset's ``table`` and volume ``cache``."""
        key = (dataset, method, seed)
        if key not in self._features:
            kept = {k: v for k, v in self._features.items() if k[0] == dataset}  # one dataset at a time
            self._features = {**kept, key: encoder_features(table, str(cache), self.encoder, pretrained, seed,
                                                                          **self.encoder_kwargs)}
        features, labelled = self._features[key], read_labelled_rows(labelled_rows)
        probe = probe_accuracies(features, table, labelled, ("val", "test"))  # one fit, scored on both
        return {"linear_probe_accuracy": probe["test"], "val_linear_probe_accuracy": probe["val"],
                "knn_accuracy": knn_accuracy(features, table, labelled)}
