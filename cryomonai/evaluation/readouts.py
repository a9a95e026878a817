"""Cheap readouts of an encoder: linear probe and k-nearest neighbours on frozen features.

The experiment grid's extra columns (:mod:`cryomonai.experiment.grid`): the encoder (pretrained, or
randomly initialised with the cell's seed) embeds every subtomogram once (normalised like the
bundle's ``eval_transform``); a logistic regression and a kNN classifier (scikit-learn) are fit on
the *same labelled subset* the cell fine-tuned on — the table rows its bundle run saved
(``eval/labelled_rows.csv``, :func:`cryomonai.data.read_labelled_rows`) — and scored on the test
split. They measure the features themselves, without the
fine-tuning's optimisation noise.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from monai.data import DataLoader
from monai.utils import set_determinism
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler

from cryomonai.data import VolumeStackDataset
from cryomonai.engines import build_network, load_pretrained_encoder
from cryomonai.errors import CryoDataError
from cryomonai.networks import Classifier
from cryomonai.transforms import eval_transform

__all__ = ["PROBE_C", "PROBE_MAX_ITER", "encoder_features", "fit_linear_probe", "frozen_readouts", "knn_accuracy"]


def encoder_features(
    table: Any, cache_path: str | os.PathLike, encoder: str, pretrained: str = "", seed: int = 0, batch_size: int = 64,
    **encoder_kwargs: Any,
) -> np.ndarray:
    """Features ``(N, F)`` of every row of ``table`` (a :class:`~cryomonai.io.ParticleTable`).

    Args:
        table: the particle table (rows in table order).
        cache_path: the bundle's float16 volume cache of that table.
        encoder: registered encoder name.
        pretrained: an SSL checkpoint whose ``encoder.*`` weights are loaded ("" = random init).
        seed: seeds the random initialisation (``torch.manual_seed``).
        batch_size: volumes per forward pass.
        encoder_kwargs: the encoder's arguments (e.g. ``channels=64``), on top of those ``pretrained`` was
            built with (its run info's ``encoder_args``).
    """
    set_determinism(seed)
    net = Classifier(build_network(encoder, pretrained or None, **encoder_kwargs), len(table.class_names))
    if pretrained:
        net = load_pretrained_encoder(net, pretrained, encoder)
    net.eval()
    dataset = VolumeStackDataset(table, cache_path, transform=eval_transform(), progress=False)
    feats = []
    with torch.no_grad():
        for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
            feats.append(net.encoder(batch["image"].as_tensor()).float().cpu())
    set_determinism(None)
    return torch.cat(feats).numpy()


#: the linear probe's inverse L2 strength and iterations (one definition for every probe of the project)
PROBE_C, PROBE_MAX_ITER = 0.1, 2000


def _standardised(features: np.ndarray, table: Any, labelled_rows: np.ndarray) -> tuple[StandardScaler, np.ndarray]:
    """The scaler fit on the training split's features, and the labelled rows (checked: in that split, labelled)."""
    split, labels = table.df["split"].to_numpy(), table.df["label_index"].to_numpy()
    train = np.flatnonzero(split == "train")
    chosen = np.asarray(labelled_rows, dtype=np.int64)
    if not np.isin(chosen, train).all() or (labels[chosen] < 0).any():
        raise CryoDataError("labelled rows", "include rows outside the labelled training split",
                            "give the rows the fine-tuning saved for this table")
    return StandardScaler().fit(features[train]), chosen


def fit_linear_probe(features: np.ndarray, table: Any, labelled_rows: np.ndarray
                     ) -> tuple[StandardScaler, LogisticRegression]:
    """The linear probe on frozen ``features`` ``(N, F)``: features standardised with the training split's
    mean and std, ``LogisticRegression(C=0.1)`` fit on the table rows ``labelled_rows`` ``(n,)``.

    Returns:
        ``(scaler, probe)``: score a split with ``probe.score(scaler.transform(features[rows]), labels[rows])``.

    Raises:
        CryoDataError: labelled rows outside the labelled training split.
    """
    scaler, chosen = _standardised(features, table, labelled_rows)
    labels = table.df["label_index"].to_numpy()
    probe = LogisticRegression(C=PROBE_C, max_iter=PROBE_MAX_ITER).fit(scaler.transform(features[chosen]), labels[chosen])
    return scaler, probe


def knn_accuracy(features: np.ndarray, table: Any, labelled_rows: np.ndarray, k: int = 10, split: str = "test") -> float:
    """Accuracy on ``split`` of a cosine kNN (``k`` neighbours) fit on the table rows ``labelled_rows`` of
    ``features``, standardised on the training split as for the probe."""
    scaler, chosen = _standardised(features, table, labelled_rows)
    labels = table.df["label_index"].to_numpy()
    rows = np.flatnonzero(table.df["split"].to_numpy() == split)
    knn = KNeighborsClassifier(n_neighbors=min(k, len(chosen)), metric="cosine")
    knn.fit(scaler.transform(features[chosen]), labels[chosen])
    return float(knn.score(scaler.transform(features[rows]), labels[rows]))


def frozen_readouts(features: np.ndarray, table: Any, labelled_rows: np.ndarray, k: int = 10) -> tuple[float, float]:
    """Test accuracy of the linear probe (:func:`fit_linear_probe`) and of a cosine kNN (:func:`knn_accuracy`,
    ``k`` neighbours) on ``features``.

    Both are fit on the table rows ``labelled_rows`` ``(n,)`` — the subset the fine-tuning of the
    same cell trained on — after standardising the features on the training split. The same probe
    scored on any split: :func:`cryomonai.evaluation.probes.probe_accuracies`.

    Returns:
        ``(linear_probe_accuracy, knn_accuracy)``.
    """
    scaler, probe = fit_linear_probe(features, table, labelled_rows)
    test = np.flatnonzero(table.df["split"].to_numpy() == "test")
    probe_test = float(probe.score(scaler.transform(features[test]), table.df["label_index"].to_numpy()[test]))
    return probe_test, knn_accuracy(features, table, labelled_rows, k)
