"""Write a classifier's predictions for a particle table (evaluator handlers).

MONAI's ``ClassificationSaver`` writes a file name and raw numbers; a cryo-ET user wants the table
row, the class *names* and the probabilities. Two handlers collect the evaluator's logits
(``output["pred"]``, ``(B, L)``) with the batch's ``"index"`` (row in the particle table):

* :class:`PredictionsWriter` (``evaluate``) writes one CSV, atomically::

      index,path,label,prediction,pred_index,confidence,p_<class 0>,...,p_<class L-1>

  ``label`` is the true class name (the batch's ``"name"``, "" when unlabelled), ``confidence`` the
  softmax probability of the prediction.
* :class:`ParticlePredictionsWriter` (``inference``, ``embed``) joins the predictions to the input
  table and writes ``predictions.star`` + ``predictions.csv`` (every input column kept; the columns
  and the writing are :mod:`cryomonai.io.predictions`') and the encoder features
  ``embeddings.npy``; see its docstring for the columns. ``min_probability`` keeps only confident
  predictions, ``split_by_class`` adds one STAR file per class, ``coordinates`` chooses the STAR
  file's convention (RELION 5 centred Å, or RELION 3/4 voxels for Warp and ArtiaX).

Single process (in DDP, each rank would write its own share: give it ``filename`` per rank).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from ignite.engine import Engine, Events
from monai.data import MetaTensor
from monai.utils import convert_to_tensor

from cryomonai.data.extract import tomogram_paths
from cryomonai.errors import ConfigError, CryoDataError, as_flag
from cryomonai.io.atomic import atomic_write
from cryomonai.io.copick import is_copick_config, write_copick_predictions
from cryomonai.io.predictions import (
    INPUT_CLASS,
    MAX_PROBABILITY,
    PREDICTED_NAME,
    PREDICTED_NUMBER,
    check_coordinates,
    check_min_probability,
    confident_rows,
    prediction_columns,
    write_star_and_csv,
)
from cryomonai.io.table import ParticleTable, read_particle_table

logger = logging.getLogger(__name__)

__all__ = ["ParticlePredictionsWriter", "PredictionsWriter"]


def _collated(batch: Any, output: Any, pred_key: str) -> tuple[Mapping[str, Any], torch.Tensor]:
    """(batch dict of batched values, logits (B, L)) whether or not the engine decollated them."""
    if isinstance(output, Sequence) and not isinstance(output, Mapping):  # decollate=True
        pred = torch.stack([convert_to_tensor(o[pred_key], track_meta=False) for o in output])
        keys = batch[0].keys()
        return {k: [b[k] for b in batch] for k in keys}, pred
    return batch, convert_to_tensor(output[pred_key], track_meta=False)


def _paths(batch: Mapping[str, Any], n: int) -> list[str]:
    """The image files of a batch, from the MetaTensor meta data (or ``""``)."""
    image = batch.get("image")
    if isinstance(image, MetaTensor):
        names = image.meta.get("filename_or_obj", [""] * n)
        return [str(p) for p in (names if isinstance(names, (list, tuple)) else [names] * n)]
    if isinstance(image, list) and image and isinstance(image[0], MetaTensor):
        return [str(i.meta.get("filename_or_obj", "")) for i in image]
    return [""] * n


def _central_slices(image: Any) -> np.ndarray | None:
    """The central xy slice of each volume of a batch, ``(B, 1, D, H, W)`` → ``(B, H, W)`` uint8 (1–99 % scaled per
    volume: a thumbnail for the report), or None when the batch holds no 3D images."""
    if isinstance(image, (list, tuple)) and image and isinstance(image[0], torch.Tensor):
        image = torch.stack([torch.as_tensor(i) for i in image])
    if not isinstance(image, torch.Tensor) or image.ndim != 5:
        return None
    xy = convert_to_tensor(image[:, 0, image.shape[2] // 2], track_meta=False).detach().float().cpu()  # (B, H, W)
    lo, hi = torch.quantile(xy.reshape(len(xy), -1), torch.tensor([0.01, 0.99]), dim=1)[:, :, None, None]
    scaled = (xy - lo) / torch.clamp(hi - lo, min=1e-6)
    return (scaled.clamp(0, 1) * 255).round().to(torch.uint8).numpy()


class PredictionsWriter:
    """Collect an evaluator's predictions and write them to ``filename`` as CSV at completion.

    Args:
        filename: the CSV to write (its folder is created).
        class_names: names of the ``L`` classes, in logit order (the training table's).
        pred_key: key of the logits in the engine output.

    Raises:
        CryoDataError: (at the first batch) the logits do not have ``len(class_names)`` columns.
    """

    def __init__(self, filename: str | os.PathLike, class_names: Sequence[str], pred_key: str = "pred") -> None:
        self.filename, self.class_names, self.pred_key = Path(filename), list(class_names), pred_key
        self.rows: list[dict[str, Any]] = []

    def attach(self, engine: Engine) -> None:
        """Reset at ``STARTED``, collect at each ``ITERATION_COMPLETED``, write at ``COMPLETED``."""
        engine.add_event_handler(Events.STARTED, lambda _: self.rows.clear())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)
        engine.add_event_handler(Events.COMPLETED, self.write)

    def __call__(self, engine: Engine) -> None:
        batch, logits = _collated(engine.state.batch, engine.state.output, self.pred_key)
        if logits.ndim != 2 or logits.shape[1] != len(self.class_names):
            shape = tuple(logits.shape)
            raise CryoDataError("predictions", f"logits of shape {shape} for {len(self.class_names)} classes",
                                "use the class names of the table the model was trained on")
        probs = torch.softmax(logits.detach().float(), dim=1).cpu()  # (B, L)
        n = probs.shape[0]
        index = [int(i) for i in convert_to_tensor(batch.get("index", [-1] * n), track_meta=False).reshape(-1)]
        for i, path, true, p in zip(index, _paths(batch, n), self._true_names(batch, n), probs):
            k = int(p.argmax())
            row = {"index": i, "path": path, "label": true, "prediction": self.class_names[k], "pred_index": k,
                   "confidence": float(p[k])}
            row.update({f"p_{name}": float(v) for name, v in zip(self.class_names, p)})
            self.rows.append(row)

    def _true_names(self, batch: Mapping[str, Any], n: int) -> list[str]:
        """True class names: the table's ``"name"`` (its own class order may differ), else ``"label"``."""
        if "name" in batch:
            return [str(name or "") for name in batch["name"]]
        labels = [int(i) for i in convert_to_tensor(batch.get("label", [-1] * n), track_meta=False).reshape(-1)]
        return [self.class_names[i] if 0 <= i < len(self.class_names) else "" for i in labels]

    def write(self, engine: Engine | None = None) -> Path:
        """Write the collected rows; returns the file."""
        self.filename.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(self.filename, "w", encoding="utf-8", newline="") as f:
            pd.DataFrame(self.rows).to_csv(f, index=False, float_format="%.6g")
        return self.filename


class ParticlePredictionsWriter:
    """Join a network's outputs to the particle table; write STAR + CSV + ``embeddings.npy``.

    For a classifier (``class_names`` given, ``output["pred"]`` logits ``(B, L)``) it writes
    ``<output_dir>/<prefix>.star`` and ``.csv``: the rows of ``table`` that were predicted, in
    table order, with **every input column** and

    * ``rlnClassNumber`` (STAR) / ``label``, ``label_index`` (CSV) = the **predicted** class, so a
      tool reading RELION particle lists sees the class assignment; the ``data_classes`` block
      names the model's classes (1-based numbers);
    * ``cryoPredictedClassNumber`` (1-based) and ``cryoPredictedClassName`` (the same, explicit);
    * ``rlnMaxValueProbDistribution``: the softmax probability of the predicted class;
    * ``cryoProbability_<class>``: every class probability (:func:`~cryomonai.io.predictions.prediction_columns`);
    * ``cryoInputClassName``: the input's own class, when the input table had labels.

    Paths (``rlnImageName``, tomogram) are rewritten relative to ``output_dir``. The encoder
    features are captured by a forward hook on ``network.<feature_layer>`` (``(B, F)``) and saved
    as ``embeddings.npy`` (N, F) float32, row ``i`` = row ``i`` of the CSV/STAR.

    Only the rows whose predicted class has a probability of at least ``min_probability`` are
    written (to the STAR, CSV, per-class STAR files, ``embeddings.npy`` and copick alike); the
    in-memory :attr:`features` and :attr:`probabilities` keep every row. With ``split_by_class``,
    ``<prefix>_<class>.star`` per class as well, in the same convention as ``<prefix>.star``;
    ``coordinates`` is that convention (:data:`~cryomonai.io.predictions.COORDINATES`: ``auto``,
    ``relion5``, ``relion3``; see :mod:`cryomonai.io.predictions`).

    Without ``class_names`` the network's output *is* the features (an encoder: the ``embed``
    run id): only ``embeddings.npy`` is written (with ``write=True``) and the features are kept in
    :attr:`features` / :attr:`rows` for a clustering step.

    With ``keep_slices``, the central xy slice of each input volume (as the network saw it) is kept
    in :attr:`slices` (N, H, W) uint8, for the thumbnails of ``report.html``
    (:func:`cryomonai.visualize.report_predictions.write_inference_report`, the bundle's next step).

    Args:
        output_dir: folder for the files (created).
        table: the particle table the dataset was made from (its rows are the batches' ``"index"``).
        class_names: the model's classes in logit order, or None for an encoder.
        prefix: base name of the STAR/CSV files.
        feature_layer: submodule whose output are the features; None: do not capture.
        pred_key: key of the network output in the engine output.
        write: write the files at ``COMPLETED``.
        copick_user_id: for a table read from a copick project, also write the predictions back into
            it as copick picks under this user id (:func:`~cryomonai.io.copick.write_copick_predictions`);
            None: do not.
        min_probability: keep the predictions whose class probability is at least this (0 to 1; 0: all).
        split_by_class: also write one STAR file per predicted class.
        coordinates: the STAR files' coordinate convention: ``auto``, ``relion5`` or ``relion3``.
        keep_slices: keep each input's central xy slice (1 byte per pixel) for the report's thumbnails
            (a classifier's run only).

    Raises:
        ConfigError: (at construction) ``min_probability`` outside [0, 1], an unknown ``coordinates``.

    Attributes:
        rows: (N,) table rows (sorted, after the run); features: (N, F); probabilities: (N, L) or None;
        slices: (N, H, W) uint8 central xy slices, or None (``keep_slices`` off, or no 3D images).
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        table: ParticleTable | str | os.PathLike,
        class_names: Sequence[str] | None = None,
        prefix: str = "predictions",
        feature_layer: str | None = "encoder",
        pred_key: str = "pred",
        write: bool = True,
        copick_user_id: str | None = None,
        min_probability: float = 0.0,
        split_by_class: bool = False,
        coordinates: str = "auto",
        keep_slices: bool = True,
    ) -> None:
        self.output_dir, self.prefix, self.pred_key, self.write_files = Path(output_dir), prefix, pred_key, write
        self.copick_user_id = copick_user_id
        self.min_probability, self.split_by_class = check_min_probability(min_probability), as_flag(split_by_class, "split_by_class")
        self.coordinates = check_coordinates(coordinates)
        self.table = table if isinstance(table, ParticleTable) else read_particle_table(table, check_files=False)
        self.class_names = None if class_names is None else [str(c) for c in class_names]
        self.feature_layer = feature_layer if class_names is not None else None
        self.keep_slices = bool(keep_slices) and class_names is not None  # thumbnails of a classifier's report
        self._rows: list[torch.Tensor] = []
        self._features: list[torch.Tensor] = []
        self._probs: list[torch.Tensor] = []
        self._slices: list[np.ndarray] = []
        self._hooked: torch.Tensor | None = None
        self._handle: Any = None
        self.rows, self.features, self.probabilities = np.zeros(0, np.int64), np.zeros((0, 0), np.float32), None
        self.slices: np.ndarray | None = None

    def attach(self, engine: Engine) -> None:
        """Hook the feature layer and reset at ``STARTED``, collect per iteration, write at ``COMPLETED``."""
        engine.add_event_handler(Events.STARTED, self._start)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)
        engine.add_event_handler(Events.COMPLETED, self._complete)

    def _start(self, engine: Engine) -> None:
        for collected in (self._rows, self._features, self._probs, self._slices):
            collected.clear()
        if self.feature_layer is not None and self._handle is None:
            network = getattr(engine, "network", None)
            module = getattr(network, "module", network)  # DataParallel / DDP wrap the model
            try:
                layer = module.get_submodule(self.feature_layer)
            except AttributeError:
                raise ConfigError("predictions", f"the network has no submodule {self.feature_layer!r}",
                                  "set feature_layer to the encoder's name, or None") from None
            self._handle = layer.register_forward_hook(self._hook)

    def _hook(self, module: torch.nn.Module, args: Any, output: torch.Tensor) -> None:
        self._hooked = output

    def __call__(self, engine: Engine) -> None:
        batch, pred = _collated(engine.state.batch, engine.state.output, self.pred_key)
        pred = pred.detach().float().cpu()
        n = pred.shape[0]
        if self.class_names is None:
            features = pred
        else:
            if pred.ndim != 2 or pred.shape[1] != len(self.class_names):
                raise CryoDataError("predictions", f"logits of shape {tuple(pred.shape)} for {len(self.class_names)} "
                                    "classes", "use the class names of the table the model was trained on")
            self._probs.append(torch.softmax(pred, dim=1))
            features = self._hooked.detach().float().cpu() if self._hooked is not None else torch.zeros(n, 0)
        self._features.append(features.reshape(n, -1))
        slices = _central_slices(batch.get("image")) if self.keep_slices else None
        if slices is not None:
            self._slices.append(slices)
        self._rows.append(convert_to_tensor(batch["index"], track_meta=False).reshape(-1).long().cpu())

    def _complete(self, engine: Engine | None = None) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        self.rows = torch.cat(self._rows).numpy() if self._rows else np.zeros(0, np.int64)
        self.features = torch.cat(self._features).numpy() if self._features else np.zeros((0, 0), np.float32)
        self.probabilities = torch.cat(self._probs).numpy() if self._probs else None
        order = np.argsort(self.rows, kind="stable")  # table order
        self.rows, self.features = self.rows[order], self.features[order]
        if self.probabilities is not None:
            self.probabilities = self.probabilities[order]
        same = len({s.shape[1:] for s in self._slices}) == 1 and sum(map(len, self._slices)) == len(order)
        self.slices = np.concatenate(self._slices)[order] if self._slices and same else None
        if self.write_files:
            self.write()

    def predictions_table(self) -> ParticleTable:
        """The predicted rows of the input table with the prediction columns (see the class docstring)."""
        if self.class_names is None or self.probabilities is None:
            raise ConfigError("predictions", "no class predictions (an encoder run)", "give class_names")
        df = self.table.df.loc[self.rows].copy()
        df["tomogram"] = tomogram_paths(self.table).loc[self.rows]  # absolute; written relative to the output
        if df["label"].notna().any():
            df[INPUT_CLASS] = df["label"].fillna("")
        k = self.probabilities.argmax(axis=1)
        df["label"] = [self.class_names[i] for i in k]
        df[PREDICTED_NUMBER] = k + 1
        df[PREDICTED_NAME] = df["label"].to_numpy()
        df[MAX_PROBABILITY] = self.probabilities.max(axis=1)
        for column, p in zip(prediction_columns(self.class_names), self.probabilities.T):
            df[column] = p
        return ParticleTable(df.reset_index(drop=True), list(self.class_names), self.table.source)

    def write(self) -> dict[str, Path]:
        """Write the files; returns them by kind (``star``, ``csv``, ``embeddings``, ``star:<class>`` …)."""
        out = self.output_dir
        out.mkdir(parents=True, exist_ok=True)
        written, features = {}, self.features
        if self.class_names is not None:
            predictions = self.predictions_table()
            keep = confident_rows(predictions, self.min_probability)
            predictions, features = predictions.subset(keep), features[keep]
            logger.info("%d of %d predictions with probability >= %g written", len(predictions), len(keep),
                        self.min_probability)
            written.update(write_star_and_csv(predictions, out, self.prefix, self.coordinates, self.split_by_class))
        written["embeddings"] = out / "embeddings.npy"
        with atomic_write(written["embeddings"]) as f:
            np.save(f, features.astype(np.float32))
        if self.class_names is not None:
            source = self.table.source
            if self.copick_user_id and source is not None and is_copick_config(source):
                counts = write_copick_predictions(predictions, source, user_id=self.copick_user_id)
                logger.info("%s: %d predicted picks written under copick user %r", source, sum(counts.values()),
                            self.copick_user_id)
                written["copick"] = Path(source)
        return written
