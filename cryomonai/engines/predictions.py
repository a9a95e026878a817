"""Write a classifier's predictions for a particle table as a CSV (an evaluator handler).

MONAI's ``ClassificationSaver`` writes a file name and raw numbers; a cryo-ET user wants the table
row, the class *names* and the probabilities. :class:`PredictionsWriter` collects the evaluator's
logits (``output["pred"]``, ``(B, L)``) with the batch's ``"index"`` (row in the particle table),
``"label"`` and the image file, and writes at the end of the run (atomically)::

    index,path,label,prediction,pred_index,confidence,p_<class 0>,...,p_<class L-1>

``label`` is the true class name (the batch's ``"name"``, "" when unlabelled), ``confidence`` the
softmax probability of the prediction. Single process (in DDP, each rank would write its own share: give it
``filename`` per rank).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from ignite.engine import Engine, Events
from monai.data import MetaTensor
from monai.utils import convert_to_tensor

from cryomonai.errors import CryoDataError
from cryomonai.io.atomic import atomic_write

__all__ = ["PredictionsWriter"]


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
