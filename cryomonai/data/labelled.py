"""The labelled fraction a fine-tuning trains on: the subset, and the table rows it holds.

* :func:`label_fraction_subset` — the paper's semi-supervised setting (Gupta et al. 2022, §4):
  fine-tune on 25 / 50 / 75 / 100 % of the training labels, nested and stratified
  (:func:`cryomonai.data.label_subset`), as a ``torch.utils.data.Subset`` of any MONAI dataset;
* :func:`save_labelled_rows` / :func:`read_labelled_rows` — the table rows of that subset, written
  by the bundle's fine-tuning (``eval/labelled_rows.csv``) and read back by the readouts of the
  same cell.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch.distributed as dist
from torch.utils.data import Dataset, Subset

from cryomonai.data.splits import label_subset
from cryomonai.errors import CryoDataError
from cryomonai.io.atomic import atomic_write

__all__ = ["label_fraction_subset", "read_labelled_rows", "save_labelled_rows"]


def label_fraction_subset(
    dataset: Dataset, fraction: float = 1.0, seed: int = 0, num_classes: int | None = None
) -> Subset:
    """The labelled items of ``dataset`` in a stratified, nested ``fraction`` of each class.

    Items are MONAI data dicts (``dataset.data[i]["label"]``, -1 = unlabelled, never chosen).
    For one ``seed`` the 25 % subset lies inside the 50 % one, and so on.

    Args:
        dataset: a MONAI dataset whose ``data`` are dicts with ``"label"`` (e.g. the training
            split of :class:`~cryomonai.data.VolumeStackDataset`).
        fraction: in (0, 1].
        seed: subset seed (a run's repeats use seeds 0 … 4).
        num_classes: if given, every class ``0 … num_classes - 1`` must keep an example.

    Raises:
        ConfigError: a bad fraction.
        CryoDataError: no labelled item, or a class left without examples.
        TypeError: ``dataset`` has no ``data`` list.

    Example:
        >>> from monai.data import Dataset
        >>> ds = Dataset([{"label": i % 2} for i in range(8)] + [{"label": -1}])
        >>> sorted(ds[i]["label"] for i in label_fraction_subset(ds, 0.5).indices)
        [0, 0, 1, 1]
    """
    data: Sequence[dict] = getattr(dataset, "data", None)  # type: ignore[assignment]
    if data is None:
        raise TypeError(f"label_fraction_subset: a {type(dataset).__name__} has no 'data' list "
                        "(give a MONAI dataset of data dicts with 'label')")
    labels = np.array([int(item.get("label", -1)) for item in data])
    classes = list(range(num_classes)) if num_classes is not None else None
    mask = label_subset(labels, fraction, seed, classes=classes)
    if not mask.any():
        raise CryoDataError("training split", "has no labelled particles", "label some particles (rlnClassNumber > 0)")
    return Subset(dataset, np.flatnonzero(mask).tolist())


def save_labelled_rows(labelled: Subset, path: str | os.PathLike) -> None:
    """Write which table rows a fine-tuning trains on: ``row,label`` per item of ``labelled``.

    ``labelled`` is :func:`label_fraction_subset`'s ``Subset`` of a dataset of data dicts with
    ``"index"`` (the row in the particle table) and ``"label"``. Readouts of the same cell read it
    back (:func:`read_labelled_rows`) instead of rebuilding the subset. Written atomically, by rank 0.
    """
    if dist.is_available() and dist.is_initialized() and dist.get_rank() != 0:
        return
    data = labelled.dataset.data  # type: ignore[attr-defined]
    rows = [(int(data[i]["index"]), int(data[i]["label"])) for i in labelled.indices]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "w") as fh:
        fh.write("row,label\n" + "".join(f"{r},{lab}\n" for r, lab in rows))


def read_labelled_rows(path: str | os.PathLike) -> np.ndarray:
    """The table rows ``(n,)`` a fine-tuning trained on (written by :func:`save_labelled_rows`).

    Raises:
        CryoDataError: the file is missing or not such a table.
    """
    try:
        rows = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.int64, ndmin=2)
    except (OSError, ValueError) as err:
        raise CryoDataError(path, f"cannot read the labelled rows ({err})",
                            "rerun the fine-tuning (its eval/ folder holds this file)") from None
    return rows[:, 0]
