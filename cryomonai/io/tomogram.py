"""Open a tomogram whatever its format: an MRC file (memory-mapped) or an OME-Zarr image (chunked).

An OME-Zarr image may also be a URL (``https://``, ``s3://``, ``file://``, optionally cached; see
:mod:`cryomonai.io.stores`): only the chunks of the boxes sliced are fetched. An MRC file must be local.

Extraction and inference read a few boxes of a tomogram that may be larger than the memory; both
formats give a lazily read (z, y, x) array-like, sliced box by box. An OME-Zarr image has several
resolution levels: :func:`choose_level` takes the coarsest level that is still at least as fine as
the voxel size asked for, so the box is read at the fewest voxels and only ever Fourier-*cropped*
to the target (an MRC file has one level).

Example:
    >>> import tempfile, pathlib, numpy as np
    >>> from cryomonai.io.mrc import write_mrc
    >>> path = write_mrc(pathlib.Path(tempfile.mkdtemp()) / "tomo.mrc", np.zeros((4, 6, 8), np.float32), 10.0)
    >>> lv = choose_level(tomogram_levels(path), voxel_size=20.0)
    >>> lv.level, lv.shape, lv.voxel_size, open_tomogram(path, lv.level)[0:2, 0:2, 0:2].shape
    ('', (4, 6, 8), 10.0, (2, 2, 2))
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryomonai.errors import ConfigError, CryoDataError
from cryomonai.io.mrc import read_mrc, read_mrc_header
from cryomonai.io.omezarr import is_ome_zarr, read_ome_zarr_levels
from cryomonai.io.stores import is_url

__all__ = ["TomogramLevel", "choose_level", "open_tomogram", "tomogram_levels"]

#: relative tolerance when comparing voxel sizes (headers store them to ~6 digits)
_VOXEL_RTOL = 1e-3


@dataclass(frozen=True)
class TomogramLevel:
    """One resolution level of a tomogram.

    Attributes:
        path: the MRC file or the OME-Zarr image folder.
        level: the OME-Zarr level's array path (``"0"``, ``"1"``, …); ``""`` for an MRC file.
        shape: (z, y, x) in voxels.
        voxel_size: voxel size along x in Å.
        voxel_set: False for an MRC file whose header leaves the voxel size unset (``voxel_size`` is then 1.0).
    """

    path: str
    level: str
    shape: tuple[int, ...]
    voxel_size: float
    voxel_set: bool = True


def tomogram_levels(path: str | os.PathLike) -> list[TomogramLevel]:
    """The resolution levels of a tomogram, finest first (one for an MRC file). Reads headers only.

    Raises:
        CryoDataError: a missing or unreadable file, or not a single 3D volume.
    """
    path = str(path)
    if is_ome_zarr(path):
        return [TomogramLevel(path, lv.path, lv.shape, lv.voxel_size) for lv in read_ome_zarr_levels(path)]
    _local_mrc(path)
    info = read_mrc_header(path)
    if len(info.shape) != 3:
        raise CryoDataError(path, f"is not a 3D tomogram (shape {info.shape})", "give the reconstructed tomogram")
    return [TomogramLevel(path, "", tuple(info.shape), float(info.voxel_size[2]), info.voxel_set)]


def choose_level(levels: list[TomogramLevel], voxel_size: float | None = None) -> TomogramLevel:
    """The coarsest level whose voxel size is at most ``voxel_size`` Å (the finest if none is, or for None)."""
    if voxel_size is None:
        return levels[0]
    fine_enough = [lv for lv in levels if lv.voxel_size <= float(voxel_size) * (1 + _VOXEL_RTOL)]
    return max(fine_enough, key=lambda lv: lv.voxel_size) if fine_enough else levels[0]


def open_tomogram(path: str | os.PathLike, level: str = "") -> Any:
    """A lazily read (z, y, x) array of one level (``""``: the finest), stored dtype: ``np.memmap`` (MRC) or a chunked view (OME-Zarr).

    Slice the box you need, then convert it (``np.asarray(t[z0:z1, y0:y1, x0:x1], np.float32)``).
    """
    if is_ome_zarr(path):
        levels = read_ome_zarr_levels(path)
        chosen = next((lv for lv in levels if lv.path == level), None) if level else levels[0]
        if chosen is None:
            raise ConfigError(path, f"has no level {level!r} (levels: {[lv.path for lv in levels]})",
                              "give one of its levels (or none: the finest)")
        return chosen.open()
    _local_mrc(path)
    return read_mrc(Path(path), mmap=True)[0]


def _local_mrc(path: str | os.PathLike) -> None:
    """Refuse an MRC file at a URL (it cannot be read by chunks)."""
    if is_url(path):
        raise CryoDataError(path, "is an MRC file at a URL, which cannot be read by chunks",
                            "download it, or convert it to OME-Zarr (e.g. a copick project)")
