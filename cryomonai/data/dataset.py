"""From a particle table to MONAI data: data dicts, volume validation and a training cache.

Two ways to feed subtomograms to a MONAI trainer:

1. **Plain MONAI** (what bundle users know): :func:`table_to_data_dicts` gives
   ``[{"image": path, "label": int, "name": str, "index": int}, ...]`` for
   ``monai.data.CacheDataset``/``Dataset`` with
   ``LoadImaged(keys="image", reader="cryomonai.io.MrcReader", ensure_channel_first=True)``.
2. **A volume stack** for thousands of small files: :func:`build_volume_cache` reads every
   volume once into one ``.npy`` stack (n, D, H, W) (float16 by default: half the size) and
   :class:`VolumeStackDataset` memory-maps it, so epochs never re-open MRC files.

Items of both are MONAI dicts; the image is a (1, D, H, W) float32 ``MetaTensor`` with axes
(z, y, x) and affine ``diag(voxel size, 1)``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import Dataset, MetaTensor
from tqdm.auto import tqdm

from cryomonai.data.extract import fourier_resize
from cryomonai.errors import ConfigError, CryoDataError
from cryomonai.io.atomic import atomic_path, atomic_write
from cryomonai.io.mrc import check_volume, read_mrc, read_mrc_header
from cryomonai.io.table import SPLITS, ParticleTable, read_particle_table

__all__ = ["VolumeStackDataset", "build_volume_cache", "table_to_data_dicts", "validate_volumes"]

CACHE_FORMAT = 1  # bump when the cache layout changes: old caches are then rebuilt


def _as_table(table: ParticleTable | str | os.PathLike) -> ParticleTable:
    """The table itself, or the table read from a path; it must list subtomogram files."""
    table = table if isinstance(table, ParticleTable) else read_particle_table(table)
    if table.df["path"].isna().any():
        raise CryoDataError(table.source or "particle table", "lists particle coordinates but no subtomogram files",
                            "extract subtomograms first and use the table that lists them")
    return table


def table_to_data_dicts(table: ParticleTable | str | os.PathLike, split: str | None = None) -> list[dict]:
    """MONAI data dicts, one per particle (optionally only one split).

    Args:
        table: a particle table or the path of one.
        split: ``"train"``, ``"val"``, ``"test"`` or None for all rows.

    Returns:
        ``[{"image": absolute path, "label": 0-based class index or -1 (unlabelled),
        "name": class name or "" (unlabelled), "index": row in the table}, ...]``.

    Raises:
        ConfigError: an unknown split.
        CryoDataError: a split asked of a table without splits.
    """
    table = _as_table(table)
    df, where = table.df, table.source or "particle table"
    rows = np.arange(len(df))
    if split is not None:
        if split not in SPLITS:
            raise ConfigError(where, f"unknown split {split!r}", f"use one of {list(SPLITS)}")
        if df["split"].isna().all():
            raise CryoDataError(where, "has no split column",
                                "add one (cryomonai.data.stratified_split makes a stratified one) or use split=None")
        rows = np.flatnonzero((df["split"] == split).to_numpy())
    return [
        {"image": df["path"].iat[i], "label": int(df["label_index"].iat[i]),
         "name": df["label"].iat[i] or "", "index": int(i)}
        for i in rows
    ]


def validate_volumes(paths: Sequence[str | os.PathLike], box: int | None = None) -> tuple[int, int, int]:
    """Check, from the headers only, that all files are readable, cubic 3D volumes of one size.

    Reads no voxel data (finiteness is checked when the data is read, e.g. by
    :func:`build_volume_cache`).

    Args:
        paths: MRC files.
        box: required edge length in voxels, or None (then the first file sets the size).

    Returns:
        the common shape (D, H, W), i.e. (z, y, x).

    Raises:
        CryoDataError: naming the first offending file.
    """
    if len(paths) == 0:
        raise CryoDataError("volumes", "no files given", "give at least one subtomogram")
    first = read_mrc_header(paths[0]).shape
    for path in paths:
        shape = read_mrc_header(path).shape
        if len(shape) != 3 or shape[0] == 1:
            raise CryoDataError(path, f"is not a 3D volume (shape {'x'.join(map(str, shape))})", "give 3D subtomograms")
        check_volume(shape, path, box)
        if shape != first:
            raise CryoDataError(
                path, f"volume is {'x'.join(map(str, shape))} but {paths[0]} is {'x'.join(map(str, first))}",
                "extract all subtomograms with the same box size",
            )
    return first  # type: ignore[return-value]


def _fingerprint(table: ParticleTable, dtype: np.dtype) -> dict[str, Any]:
    """What the cache depends on: the table file, every volume file (path, mtime, size), dtype."""
    digest = hashlib.sha256()
    for path in table.df["path"]:
        try:
            st = os.stat(path)
        except OSError:
            raise CryoDataError(path, "file not found", "fix the particle table or extract the subtomogram")
        digest.update(f"{path}\t{st.st_mtime_ns}\t{st.st_size}\n".encode())
    source = table.source.resolve() if table.source is not None else None
    st_table = source.stat() if source is not None else None
    return {
        "format": CACHE_FORMAT,
        "table": str(source) if source is not None else None,
        "table_mtime_ns": st_table.st_mtime_ns if st_table else None,
        "table_size": st_table.st_size if st_table else None,
        "volumes_sha256": digest.hexdigest(),
        "n": len(table),
        "dtype": np.dtype(dtype).name,
    }


#: fingerprint keys of the working size (None: as cached)
_WORKING = ("working_box", "working_voxel_size")


def _sidecar(cache_path: Path) -> Path:
    return cache_path.with_name(cache_path.name + ".json")


def _cache_is_fresh(cache_path: Path, fingerprint: dict[str, Any]) -> bool:
    """True if the sidecar matches ``fingerprint`` and the stack has the recorded shape.

    A working size left at None (``working_box``, ``working_voxel_size``) accepts the cached one: a
    dataset opened by a run that does not ask for a size uses the cache as it was built.
    """
    try:
        saved = json.loads(_sidecar(cache_path).read_text())
        stack = np.load(cache_path, mmap_mode="r")
    except (OSError, ValueError):
        return False
    same = all(saved.get(k) == v for k, v in fingerprint.items() if not (k in _WORKING and v is None))
    return same and list(stack.shape) == saved.get("shape") and stack.dtype.name == fingerprint["dtype"]


def build_volume_cache(
    table: ParticleTable | str | os.PathLike,
    cache_path: str | os.PathLike,
    dtype: np.dtype | type = np.float16,
    box: int | None = None,
    progress: bool = True,
    working_box: int | None = None,
    working_voxel_size: float | None = None,
) -> Path:
    """Read every subtomogram of ``table`` once into one ``.npy`` stack (n, D, H, W).

    With ``working_box`` and/or ``working_voxel_size`` the volumes are brought to that size once,
    here, on the way into the cache: Fourier-cropped (band-limited binning) or Fourier-padded from
    the input voxel size to the working one (:func:`~cryomonai.data.extract.fourier_resize`: the
    box centre stays the centre), then centre-cropped or padded with the volume's mean to
    ``working_box``. E.g. 32³ at 10 Å → 16³ at 20 Å. The sidecar records the input and working
    sizes.

    Row ``i`` of the stack is row ``i`` of ``table.df``. Next to it, ``<cache>.json`` records the
    table file (path, mtime, size), a digest of every volume file's (path, mtime, size), the
    dtype and the shape; when they still match, nothing is read again, otherwise the cache is
    rebuilt. Both files are written atomically (the sidecar is removed first and written last,
    so an interrupted build is never mistaken for a finished one).

    Args:
        table: a particle table or the path of one.
        cache_path: the ``.npy`` file to write (its folder is created).
        dtype: stored dtype, ``np.float16`` (default, half the size) or ``np.float32``.
        box: required edge length in voxels of the input files (None: any, but all equal).
        progress: show a tqdm progress bar.
        working_box: edge of the cached volumes (None: the input's, or as already cached).
        working_voxel_size: voxel size of the cached volumes, Å (None: the input's, or as already cached).

    Returns:
        ``cache_path``.

    Raises:
        CryoDataError: naming the first file that is missing, unreadable, not 3D, not cubic, of
            another size or voxel size (> 1 %), non-finite, or outside the float16 range.
    """
    table, cache_path, dtype = _as_table(table), Path(cache_path), np.dtype(dtype)
    if dtype not in (np.dtype(np.float16), np.dtype(np.float32)):
        raise ValueError(f"the volume cache stores float16 or float32, got {dtype}")
    for name, value in (("working_box", working_box), ("working_voxel_size", working_voxel_size)):
        if value is not None and not float(value) > 0:
            raise ConfigError(name, f"is {value}", "give a positive size (voxels / Å), or leave it unset")
    fingerprint = {**_fingerprint(table, dtype), "working_box": working_box, "working_voxel_size": working_voxel_size}
    if _cache_is_fresh(cache_path, fingerprint):
        return cache_path
    shape = validate_volumes(list(table.df["path"]), box)  # cheap header pass before the long one
    in_voxel = float(read_mrc_header(table.df["path"].iloc[0]).voxel_size[2])
    resampled = shape[0] if working_voxel_size is None else max(2, round(shape[0] * in_voxel / float(working_voxel_size)))
    edge = int(working_box or resampled)
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        _sidecar(cache_path).unlink()
    with atomic_path(cache_path) as tmp:
        voxel = _fill_stack(tmp, list(table.df["path"]), shape, dtype, progress, resampled, edge)
    voxel = voxel * shape[0] / resampled
    record = {**fingerprint, "shape": [len(table), edge, edge, edge], "voxel_size": voxel,
              "input_shape": list(shape), "input_voxel_size": in_voxel}
    with atomic_write(_sidecar(cache_path), "w") as f:
        json.dump(record, f, indent=1)
    return cache_path


def _to_box(volume: np.ndarray, resampled: int, edge: int) -> np.ndarray:
    """``volume`` Fourier-resized to ``resampled``³, then centre-cropped or mean-padded to ``edge``³."""
    if volume.shape[0] != resampled:
        volume = fourier_resize(volume, (resampled,) * 3)
    if resampled > edge:
        lo = resampled // 2 - edge // 2  # voxel n // 2 stays the centre
        volume = volume[lo:lo + edge, lo:lo + edge, lo:lo + edge]
    elif resampled < edge:
        lo = edge // 2 - resampled // 2
        volume = np.pad(volume, [(lo, edge - resampled - lo)] * 3, constant_values=float(volume.mean()))
    return np.ascontiguousarray(volume, dtype=np.float32)


def _fill_stack(target: Path, paths: list[str], shape: tuple[int, ...], dtype: np.dtype, progress: bool,
                resampled: int | None = None, edge: int | None = None) -> float:
    """Read ``paths`` into a new ``.npy`` stack (n, edge³) at ``target``, each volume brought to the
    working size (:func:`_to_box`); return the input voxel size (Å)."""
    resampled, edge = resampled or shape[0], edge or shape[0]
    stack = np.lib.format.open_memmap(target, mode="w+", dtype=dtype, shape=(len(paths), edge, edge, edge))
    first_voxel = None
    for i, path in enumerate(tqdm(paths, desc="caching volumes", disable=not progress)):
        volume, voxel = read_mrc(path)  # float32, finite
        check_volume(volume, path, shape[0])
        if np.abs(volume).max() > float(np.finfo(dtype).max):
            raise CryoDataError(path, f"values overflow {dtype.name}", "use dtype=np.float32, or normalise")
        first_voxel = voxel if first_voxel is None else first_voxel
        if not np.isclose(voxel, first_voxel, rtol=0.01):
            raise CryoDataError(path, f"voxel size {voxel:g} Å differs from {first_voxel:g} Å of {paths[0]}",
                                "rescale the subtomograms to one voxel size")
        stack[i] = _to_box(volume, resampled, edge)
    stack.flush()
    del stack  # close the mapping before the rename
    return float(first_voxel)  # type: ignore[arg-type]


class VolumeStackDataset(Dataset):
    """A MONAI :class:`~monai.data.Dataset` over a cached volume stack (see :func:`build_volume_cache`).

    The cache is built (or reused, if still fresh) when the dataset is made, then memory-mapped
    lazily in each process (DataLoader workers included; the mapping is never pickled). Items::

        {"image": MetaTensor (1, D, H, W) float32, axes (z, y, x), affine diag(voxel size, 1),
         "label": int (-1 unlabelled), "name": str, "index": int (row in the table)}

    then passed through ``transform``. With several processes (DDP), build the cache once first
    (e.g. on rank 0) so that the ranks do not each build it.

    Args:
        table: a particle table or the path of one.
        cache_path: the ``.npy`` stack.
        split: only this split (``"train"``/``"val"``/``"test"``), or None for all rows; the
            cache always holds the whole table, so splits share it.
        transform: a MONAI (dictionary) transform or a sequence of them.
        dtype: stored dtype of the cache.
        box: required edge length in voxels.
        progress: show a progress bar while building.
    """

    def __init__(
        self,
        table: ParticleTable | str | os.PathLike,
        cache_path: str | os.PathLike,
        split: str | None = None,
        transform: Sequence[Callable] | Callable | None = None,
        dtype: np.dtype | type = np.float16,
        box: int | None = None,
        progress: bool = True,
    ) -> None:
        table = _as_table(table)
        self.cache_path = build_volume_cache(table, cache_path, dtype=dtype, box=box, progress=progress)
        self.voxel_size = float(json.loads(_sidecar(self.cache_path).read_text())["voxel_size"])
        self._stack: np.ndarray | None = None
        super().__init__(table_to_data_dicts(table, split), transform)

    @property
    def input_size(self) -> dict[str, Any]:
        """The volumes a model trained or scored on this dataset sees: ``{"box", "voxel_size"}`` of the cache
        (after ``working_box`` / ``working_voxel_size``), without ``voxel_size`` where neither a working voxel
        size nor the first file's header gives one. Fine-tuning records it in the checkpoint's run info."""
        record = json.loads(_sidecar(self.cache_path).read_text())
        known = record.get("working_voxel_size") is not None or not self.data \
            or read_mrc_header(self.data[0]["image"]).voxel_set
        return {"box": int(record["shape"][1]), **({"voxel_size": round(self.voxel_size, 4)} if known else {})}

    @property
    def stack(self) -> np.ndarray:
        """The read-only memory-mapped stack (n, D, H, W), opened on first use in this process."""
        if self._stack is None:
            self._stack = np.load(self.cache_path, mmap_mode="r")
        return self._stack

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_stack"] = None  # pickling a memmap would copy the whole stack
        return state

    def _transform(self, index: int) -> Any:
        item = dict(self.data[index])
        volume = np.array(self.stack[item["index"]], dtype=np.float32)  # (D, H, W), a writable copy
        affine = torch.diag(torch.tensor([self.voxel_size] * 3 + [1.0], dtype=torch.float64))
        meta = {"filename_or_obj": item["image"]}
        item["image"] = MetaTensor(torch.from_numpy(volume)[None], affine=affine, meta=meta)  # (1, D, H, W)
        return self.transform(item)
