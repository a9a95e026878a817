"""The linear probe on any split, and on the validation split from a checkpoint.

:func:`~cryomonai.evaluation.readouts.frozen_readouts` scores its probe on the test split only. Checks
that must not read test (issue 26: the fair-baseline check and "every arm's fine-tuned model beats the
probe on its own frozen features", both on validation) need the same probe
(:func:`~cryomonai.evaluation.readouts.fit_linear_probe`) scored on the validation split:

* :func:`probe_accuracies` — the same probe (features standardised on the training split, logistic
  regression with ``C = 0.1`` fit on the labelled rows a cell fine-tuned on) scored on chosen splits;
* :func:`validation_probe` — from a checkpoint (or random init with a seed): the encoder's features of
  every row, then the probe's validation accuracy.

Example:
    >>> import numpy as np, pandas as pd
    >>> table = type("T", (), {"df": pd.DataFrame({"split": ["train"] * 4 + ["val"] * 2,
    ...                                            "label_index": [0, 1, 0, 1, 0, 1]})})()
    >>> features = np.array([[0.0], [1.0], [0.1], [0.9], [0.2], [0.8]])
    >>> probe_accuracies(features, table, np.arange(4))
    {'val': 1.0}
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from cryomonai.data import read_labelled_rows
from cryomonai.errors import CryoDataError
from cryomonai.evaluation.readouts import encoder_features, fit_linear_probe

__all__ = ["probe_accuracies", "validation_probe"]

def probe_accuracies(features: np.ndarray, table: Any, labelled_rows: np.ndarray | str | os.PathLike,
                     splits: Sequence[str] = ("val",)) -> dict[str, float]:
    """Accuracy on each of ``splits`` of a linear probe fit on ``labelled_rows`` of ``features``.

    The probe is :func:`~cryomonai.evaluation.readouts.fit_linear_probe`, the one of
    :func:`~cryomonai.evaluation.readouts.frozen_readouts` (the same numbers on ``test``): features
    standardised with the training split's mean and std, ``LogisticRegression(C=0.1)`` fit on the rows the
    cell fine-tuned on.

    Args:
        features: ``(N, F)``, one row per table row (:func:`~cryomonai.evaluation.readouts.encoder_features`).
        table: the :class:`~cryomonai.io.ParticleTable` (``split`` and ``label_index`` columns).
        labelled_rows: ``(n,)`` table rows of the labelled training subset, or the ``labelled_rows.csv``
            a fine-tuning saved.
        splits: where to score (``"val"``, ``"test"`` …).

    Raises:
        CryoDataError: labelled rows outside the training split, or a split with no labelled row.
    """
    if isinstance(labelled_rows, (str, os.PathLike)):
        labelled_rows = read_labelled_rows(labelled_rows)
    scaler, probe = fit_linear_probe(features, table, labelled_rows)
    split, labels = table.df["split"].to_numpy(), table.df["label_index"].to_numpy()
    out = {}
    for name in splits:
        rows = np.flatnonzero((split == name) & (labels >= 0))
        if not len(rows):
            raise CryoDataError("particle table", f"no labelled row in split {name!r}",
                                "score the probe on a split the table has (train/val/test)")
        out[name] = float(probe.score(scaler.transform(features[rows]), labels[rows]))
    return out


def validation_probe(table: Any, cache_path: str | os.PathLike, encoder: str, pretrained: str,
                     labelled_rows: np.ndarray | str | os.PathLike, seed: int = 0, batch_size: int = 64) -> float:
    """Validation accuracy of the linear probe on an encoder's frozen features.

    The encoder is ``pretrained``'s (an SSL or a fine-tuning checkpoint: its ``encoder.*`` weights), or
    random with ``seed`` when ``pretrained`` is ``""`` (the random arm's own features, seeded as the
    grid seeds its cell). The probe is fit on ``labelled_rows`` (the cell's ``labelled_rows.csv``).

    Args:
        table, cache_path, encoder, pretrained, seed, batch_size: as
            :func:`~cryomonai.evaluation.readouts.encoder_features`.
        labelled_rows: as :func:`probe_accuracies`.
    """
    features = encoder_features(table, cache_path, encoder, pretrained, seed, batch_size)
    return probe_accuracies(features, table, labelled_rows, ("val",))["val"]
