"""MONAI datasets that classify straight from tomograms + picks (no subtomogram files written).

* :class:`PickDataset` — extracts each pick's box on the fly from memory-mapped tomograms
  (:mod:`cryomonai.data.extract`: rescaling, normalisation, edge policy);
* :func:`particle_dataset` — one entry point for any particle table: subtomogram files
  (``LoadImaged`` with :class:`~cryomonai.io.MrcReader`) or a picks table (:class:`PickDataset`).
  The bundle's ``inference`` and ``embed`` run ids use it, so ``--infer_table`` may be either.

Items are MONAI dicts, ``"image"`` a (1, D, H, W) float32 ``MetaTensor``, axes (z, y, x), beam
along z, ``"index"`` the row of the table (what prediction writers join on).

Example:
    >>> import math, tempfile, pathlib
    >>> from cryomonai.simulate.tomogram import simulate_tomogram
    >>> star = simulate_tomogram(pathlib.Path(tempfile.mkdtemp()), (32, 48, 48), 4, math.inf, ("1bxn",), box=16)
    >>> ds = PickDataset(star, box=16, edge="pad")
    >>> tuple(ds[0]["image"].shape), ds[0]["name"]
    ((1, 16, 16, 16), '1bxn')
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from monai.data import Dataset, MetaTensor
from monai.transforms import Compose, LoadImaged

from cryomonai.data.dataset import table_to_data_dicts
from cryomonai.data.extract import PickExtractor, apply_edge_policy, locate_picks, read_picks
from cryomonai.errors import ConfigError
from cryomonai.io.mrc import read_mrc_header
from cryomonai.io.table import SPLITS, ParticleTable

__all__ = ["PickDataset", "check_dataset_input", "check_model_input", "check_table_input", "particle_dataset",
           "table_input"]

#: how far a box's voxel size may be from the model's (Fourier cropping rounds the source box to whole voxels)
VOXEL_RTOL = 0.1


def check_model_input(model_input: Mapping[str, Any] | None, box: int, voxel_sizes: Sequence[float], fix: str) -> None:
    """Refuse boxes a model was not trained on: ``box``³ voxels of ``voxel_sizes`` Å against ``model_input``
    (``{"name", "box", "voxel_size"}``, :func:`cryomonai.engines.model_input`; empty or None: nothing known,
    nothing checked). ``fix`` says how this caller's boxes are cut.

    Raises:
        ConfigError: another box, or a voxel size more than :data:`VOXEL_RTOL` from the model's.

    Example:
        >>> check_model_input({"name": "m", "box": 16, "voxel_size": 20.0}, 32, [10.0], "cut others")
        Traceback (most recent call last):
        ...
        cryomonai.errors.ConfigError: checkpoint m: expects 16³ boxes at 20 Å; these are 32³ at 10 Å — fix: cut others
    """
    if not model_input:
        return
    want_box, want_voxel = model_input.get("box"), model_input.get("voxel_size")
    sizes = np.unique(np.round(np.asarray(voxel_sizes, dtype=float), 3))
    off = [v for v in sizes if want_voxel and abs(v / float(want_voxel) - 1) > VOXEL_RTOL]
    if (want_box and int(box) != int(want_box)) or off:
        have = ", ".join(f"{v:g}" for v in (off or sizes)[:3]) or "?"
        problem = (f"expects {want_box or box}³ boxes at {float(want_voxel):g} Å; these are {box}³ at {have} Å"
                   if want_voxel else f"expects {want_box}³ boxes; these are {box}³")
        raise ConfigError(f"checkpoint {model_input.get('name', '')}", problem, fix)


class PickDataset(Dataset):
    """A MONAI dataset that extracts subtomograms at the picks of a tomogram, on the fly.

    Only the picks' boxes are read (tomograms are memory-mapped, and reopened in each DataLoader
    worker). Items, before ``transform``::

        {"image": MetaTensor (1, box, box, box) float32, axes (z, y, x), affine diag(voxel size, 1),
         "label": int (-1 unlabelled), "name": str, "index": int (row in the picks table)}

    Args:
        table: a picks table or its file (:func:`~cryomonai.data.extract.read_picks`).
        box: subtomogram edge in voxels (the model's input size).
        voxel_size: target voxel size in Å (None: the tomogram's, no resampling).
        edge: ``"report"``, ``"pad"`` or ``"error"``; the picks rejected when the dataset is
            made are in :attr:`rejected` and written to ``rejected_file`` if given.
        split: only the rows of this split (None: all).
        transform: MONAI transform(s) applied to each item.
        normalise: zero mean, unit std per subtomogram (the bundle's ``eval_transform`` also does it).
        pick_voxel_size: voxel size (Å) of the coordinates (None: the tomogram's).
        rejected_file: CSV listing the rejected picks.
        model_input: the boxes the model expects (:func:`check_model_input`), checked before anything is written.
    """

    def __init__(
        self,
        table: ParticleTable | str | os.PathLike,
        box: int,
        voxel_size: float | None = None,
        edge: str = "report",
        split: str | None = None,
        transform: Sequence[Callable] | Callable | None = None,
        normalise: bool = False,
        pick_voxel_size: float | None = None,
        rejected_file: str | os.PathLike | None = None,
        model_input: Mapping[str, Any] | None = None,
    ) -> None:
        table = table if isinstance(table, ParticleTable) else read_picks(table)
        if split is not None:
            if split not in SPLITS:
                raise ConfigError(table.source or "picks table", f"unknown split {split!r}",
                                  f"use one of {list(SPLITS)}")
            table = ParticleTable(table.df[(table.df["split"] == split).to_numpy()], table.class_names, table.source)
        located = locate_picks(table, box, voxel_size, pick_voxel_size)
        inside = located[located["status"] != "outside"]
        want = {"box": box, "voxel_size": "?", **(model_input or {})}
        check_model_input(model_input, box, inside["tomogram_voxel"] * inside["source_box"] / int(box),
                          f"cut its boxes with --box {want['box']} --voxel_size {want['voxel_size']} (monai.bundle run: "
                          f"--box {want['box']} --infer_voxel_size {want['voxel_size']})")
        kept, self.rejected = apply_edge_policy(table, located, edge, rejected_file)
        self.extractor = PickExtractor(box, normalise)
        data = [
            {**{k: pick[k] for k in kept.columns}, "label": int(table.df.at[row, "label_index"]),
             "name": table.df.at[row, "label"] or "", "index": int(row)}
            for row, pick in kept.iterrows()
        ]
        super().__init__(data, transform)

    def _transform(self, index: int) -> Any:
        item = self.data[index]
        volume = self.extractor(pd.Series(item))  # (box, box, box) float32
        voxel = float(item["tomogram_voxel"]) * int(item["source_box"]) / self.extractor.box
        affine = torch.diag(torch.tensor([voxel] * 3 + [1.0], dtype=torch.float64))
        centre = np.array([item["cz"], item["cy"], item["cx"]], dtype=np.int64)
        meta = {"filename_or_obj": item["tomogram_path"], "pick_zyx": centre}
        out = {"image": MetaTensor(torch.from_numpy(volume)[None], affine=affine, meta=meta),  # (1, D, H, W)
               "label": item["label"], "name": item["name"], "index": item["index"]}
        return self.transform(out) if self.transform is not None else out


def table_input(table: ParticleTable | str | os.PathLike) -> dict[str, Any]:
    """The input a model trained on ``table`` expects: ``{"box", "voxel_size"}`` from the header of its
    first subtomogram file (no ``voxel_size`` where the header leaves it unset), ``{}`` for a picks table.

    Inference reads such a table's files as they are, so this is what a model sees there (training reads the
    bundle's cache, resized to ``working_box`` / ``working_voxel_size``: ``VolumeStackDataset.input_size``).

    Raises:
        CryoDataError: the table or its first file is unreadable.
    """
    table = table if isinstance(table, ParticleTable) else read_picks(table)
    paths = table.df["path"].dropna()
    if paths.empty or not table.df["path"].notna().all():
        return {}
    header = read_mrc_header(paths.iloc[0])
    return {"box": int(header.shape[-1]), **({"voxel_size": round(float(header.voxel_size[2]), 4)} if header.voxel_set else {})}


def check_table_input(model_input: Mapping[str, Any] | None, table: ParticleTable | str | os.PathLike) -> None:
    """:func:`check_model_input` for a table of subtomogram files, on its first file's header
    (:func:`table_input`); a picks table, or nothing known of the model, is not checked here.

    Raises:
        ConfigError: the files are boxes the model was not trained on.
    """
    if not model_input:
        return
    table = table if isinstance(table, ParticleTable) else read_picks(table)
    have = table_input(table)
    if have:
        first = table.df["path"].iloc[0]
        check_model_input(model_input, have["box"], [have["voxel_size"]] if "voxel_size" in have else [],
                          f"extract {first} and the rest as {model_input.get('box', '?')}³ boxes at "
                          f"{model_input.get('voxel_size', '?')} Å (cryomonai extract --box, --voxel_size)")


def check_dataset_input(model_input: Mapping[str, Any] | None, dataset: Any) -> None:
    """:func:`check_model_input` for a :class:`~cryomonai.data.VolumeStackDataset` (the bundle's cache, at
    its working size: ``dataset.input_size``), e.g. before ``evaluate`` scores a classifier on it.

    Raises:
        ConfigError: the cached volumes are not the model's input; the fix names the working size.
    """
    if not model_input:
        return
    have = dataset.input_size
    check_model_input(model_input, have["box"], [have["voxel_size"]] if "voxel_size" in have else [],
                      f"give --working_box {model_input.get('box', have['box'])}"
                      + (f" --working_voxel_size {float(model_input['voxel_size']):g}" if model_input.get("voxel_size") else "")
                      + " (the volumes are resized once into the cache)")


def particle_dataset(
    table: ParticleTable | str | os.PathLike,
    transform: Sequence[Callable] | Callable | None = None,
    box: int | None = None,
    split: str | None = None,
    voxel_size: float | None = None,
    edge: str = "report",
    rejected_file: str | os.PathLike | None = None,
    pick_voxel_size: float | None = None,
    model_input: Mapping[str, Any] | None = None,
) -> Dataset:
    """A MONAI dataset of any particle table: subtomogram files, or tomogram + picks.

    A table listing subtomogram files gives ``monai.data.Dataset`` over
    :func:`~cryomonai.data.table_to_data_dicts` with
    ``LoadImaged(reader="cryomonai.io.MrcReader", ensure_channel_first=True)`` before
    ``transform`` (``box``, ``voxel_size``, ``edge`` are not used); a picks table (no paths)
    gives a :class:`PickDataset`. ``model_input`` (:func:`check_model_input`): the boxes the model expects;
    a subtomogram table is checked on its first file's header.

    Raises:
        ConfigError: a picks table and no ``box``; boxes the model was not trained on.
        CryoDataError: any error of the table or tomograms.
    """
    table = table if isinstance(table, ParticleTable) else read_picks(table)
    if table.df["path"].notna().all():
        load = LoadImaged(keys="image", reader="cryomonai.io.MrcReader", ensure_channel_first=True)
        data = table_to_data_dicts(table, split)
        if data:
            check_table_input(model_input, table)
        return Dataset(data, Compose([load] + ([transform] if transform else [])))
    if box is None:
        raise ConfigError(table.source or "picks table", "lists picks, not subtomograms, and no box is given",
                          "set the box to the model's input size (e.g. --box 32)")
    return PickDataset(table, box, voxel_size, edge, split, transform, False, pick_voxel_size, rejected_file, model_input)
