"""Read OME-Zarr (OME-NGFF) tomograms lazily: the multiscale levels, their voxel sizes, chunked access.

OME-Zarr is the CZ cryo-ET data portal's and copick's tomogram format: a Zarr group whose
``multiscales`` metadata (OME-NGFF 0.4 in ``.zattrs``, or 0.5 under ``ome`` in ``zarr.json``)
lists the resolution levels (``datasets``, finest first), each a Zarr array with a ``scale``
coordinate transformation, and the axes with their units. Conventions here:

* the spatial axes are ``z, y, x`` in that order (the MRC file order, beam along z); leading
  non-spatial axes (``t``, ``c``) must have length 1 and are dropped;
* voxel sizes are reported in Å (``angstrom``, ``nanometer`` and ``micrometer`` units are
  converted; an axis without a unit is taken as Å, as copick writes);
* nothing is read until it is sliced: :meth:`OmeZarrLevel.open` returns an array-like whose
  ``[z0:z1, y0:y1, x0:x1]`` reads only the chunks that box touches, so a tomogram larger than the
  memory works;
* the image is a local folder or any fsspec URL (``https://``, ``s3://``, ``file://``, a chained
  ``simplecache::…``), optionally cached in a local folder: see :mod:`cryomonai.io.stores`. A chunk
  that is not there (HTTP 404, no such file) reads as the array's fill value, as Zarr specifies; a
  refused connection or any other failed read is an error, never a silent zero.

Every problem with a store is a one-line :class:`~cryomonai.errors.CryoDataError` naming it.

Example:
    >>> import tempfile, pathlib, numpy as np, zarr
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "tomo.zarr"
    >>> g = zarr.open_group(str(path), mode="w")
    >>> _ = g.create_dataset("0", data=np.ones((8, 8, 8), np.float32), shape=(8, 8, 8))
    >>> _ = g.create_dataset("1", data=np.ones((4, 4, 4), np.float32), shape=(4, 4, 4))
    >>> g.attrs["multiscales"] = [{"version": "0.4", "axes": [{"name": a, "type": "space", "unit": "angstrom"}
    ...     for a in "zyx"], "datasets": [{"path": p, "coordinateTransformations": [{"type": "scale",
    ...     "scale": [s] * 3}]} for p, s in (("0", 10.0), ("1", 20.0))]}]
    >>> [(lv.path, lv.shape, lv.voxel_size) for lv in read_ome_zarr_levels(path)]
    [('0', (8, 8, 8), 10.0), ('1', (4, 4, 4), 20.0)]
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from cryomonai.errors import CryoDataError
from cryomonai.io.stores import cached_url, is_url, join, read_error, url_suffix, zarr_store

__all__ = ["OmeZarrLevel", "SpatialArray", "is_ome_zarr", "read_ome_zarr_levels"]

#: Å per unit of the OME-NGFF space units we accept
_UNIT_ANGSTROM = {"angstrom": 1.0, "nanometer": 10.0, "micrometer": 1e4}
_FIX = "give an OME-Zarr image group (multiscales metadata, z y x axes), e.g. a copick or data-portal tomogram"
#: suffixes of MRC tomograms, which are never taken for OME-Zarr URLs
_MRC_SUFFIXES = (".mrc", ".mrcs", ".rec", ".map", ".st", ".ali")
#: what zarr raises for a store that holds no group (zarr 2, zarr 3)
_NO_GROUP = (getattr(zarr.errors, "GroupNotFoundError", KeyError), KeyError, FileNotFoundError)


def is_ome_zarr(path: str | os.PathLike) -> bool:
    """True for a folder that is a Zarr group (``.zgroup``/``.zattrs`` or ``zarr.json``) or named ``*.zarr``,
    and for any URL not naming an MRC file (nothing is fetched).

    >>> is_ome_zarr("https://host/TS_1.zarr"), is_ome_zarr("s3://bucket/run/"), is_ome_zarr("https://host/TS_1.mrc")
    (True, True, False)
    """
    if is_url(path):
        return url_suffix(path) not in _MRC_SUFFIXES
    p = Path(path)
    return p.suffix.lower() == ".zarr" or (p.is_dir() and any((p / f).is_file() for f in (".zgroup", "zarr.json")))


class SpatialArray:
    """A lazily read (z, y, x) view of a Zarr array whose leading non-spatial axes have length 1.

    Slicing reads only the chunks it touches and returns a NumPy array in the stored dtype; a failed
    read is a one-line :class:`~cryomonai.errors.CryoDataError` naming ``where``.
    """

    def __init__(self, array: Any, n_lead: int, where: str = "OME-Zarr array") -> None:
        self.array, self.n_lead, self.where = array, int(n_lead), str(where)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.array.shape[self.n_lead:])  # type: ignore[return-value]

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.array.dtype)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def ndim(self) -> int:
        return 3

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        try:
            return np.asarray(self.array[(0,) * self.n_lead + key])
        except (IndexError, TypeError):  # a bad key is the caller's bug, not the store's
            raise
        except Exception as err:  # a refused connection, a server error, a corrupt chunk
            raise read_error(self.where, err, "voxels") from None


@dataclass(frozen=True)
class OmeZarrLevel:
    """One resolution level of an OME-Zarr tomogram.

    Attributes:
        store: the image group's folder (a ``Path``) or URL (a ``str``, see :mod:`cryomonai.io.stores`).
        path: the level's array path inside the group (``datasets[i].path``, e.g. ``"0"``).
        shape: spatial shape (z, y, x) in voxels.
        voxel_size: voxel size along x in Å.
        n_lead: leading non-spatial axes (each of length 1).
    """

    store: Path | str
    path: str
    shape: tuple[int, int, int]
    voxel_size: float
    n_lead: int = 0

    def open(self) -> SpatialArray:
        """The level's voxels, read lazily (see :class:`SpatialArray`)."""
        try:
            array = _open_array(self.store, self.path)
        except Exception as err:  # zarr raises several kinds for a missing or corrupt array
            if is_url(self.store):
                raise read_error(self.store, err, f"level {self.path!r}") from None
            raise CryoDataError(self.store, f"cannot open level {self.path!r} ({type(err).__name__}: {err})", _FIX)
        return SpatialArray(array, self.n_lead, join(self.store, self.path))


def _open_array(store: Path | str, path: str) -> Any:
    """The Zarr array ``path`` of the image at ``store`` (a local folder or a URL), read-only."""
    return zarr.open_array(zarr_store(join(store, path)), mode="r")


def _multiscales(store: Path | str) -> list[dict]:
    try:
        group = zarr.open_group(zarr_store(store), mode="r")
    except Exception as err:  # not a group, missing, unreadable
        if is_url(store) and not isinstance(err, _NO_GROUP):
            raise read_error(store, err) from None  # a refused connection, a server error
        remote_cache = is_url(store) and cached_url(str(store))[1]
        cached = " (or the server is down and the cache holds no copy)" if remote_cache else ""
        problem = f"is not a readable Zarr group{cached} ({type(err).__name__}: {err})"
        raise CryoDataError(store, problem, _FIX) from None
    attrs = dict(group.attrs)
    found = attrs.get("multiscales", attrs.get("ome", {}).get("multiscales"))
    if not found:
        raise CryoDataError(store, "has no OME-Zarr 'multiscales' metadata", _FIX)
    return found


def _scale(transforms: list[dict] | None, n_axes: int) -> np.ndarray:
    scale = np.ones(n_axes)
    for t in transforms or []:
        if t.get("type") == "scale":
            scale = scale * np.asarray(t["scale"], dtype=float)
    return scale


def read_ome_zarr_levels(path: str | os.PathLike) -> list[OmeZarrLevel]:
    """The resolution levels of an OME-Zarr image (its first multiscale), finest first.

    Reads metadata and array shapes only. ``path``: a local folder or an fsspec URL (see
    :mod:`cryomonai.io.stores`).

    Raises:
        CryoDataError: not a Zarr group, no multiscales, axes other than (…, z, y, x) or non-singleton
            leading axes, a level missing, a non-positive scale.
    """
    store: Path | str = str(path) if is_url(path) else Path(path)
    ms = _multiscales(store)[0]
    axes = [a if isinstance(a, dict) else {"name": a} for a in ms.get("axes", [{"name": n} for n in "zyx"])]
    names = [str(a.get("name", "")).lower() for a in axes]
    if len(names) < 3 or names[-3:] != ["z", "y", "x"]:
        raise CryoDataError(store, f"axes {names} do not end in z, y, x", "write the tomogram with axes (z, y, x)")
    unit = str(axes[-1].get("unit") or "angstrom").lower()
    if unit not in _UNIT_ANGSTROM:
        raise CryoDataError(store, f"unknown space unit {unit!r}", f"use one of {sorted(_UNIT_ANGSTROM)}")
    n_lead = len(names) - 3
    outer = _scale(ms.get("coordinateTransformations"), len(names))
    levels = []
    for ds in ms.get("datasets", []):
        level_path = str(ds["path"])
        try:
            shape = tuple(int(n) for n in _open_array(store, level_path).shape)
        except Exception as err:  # missing or corrupt level
            if is_url(store) and isinstance(err, OSError) and not isinstance(err, FileNotFoundError):
                raise read_error(store, err, f"level {level_path!r}") from None
            raise CryoDataError(store, f"level {level_path!r} is unreadable ({type(err).__name__}: {err})",
                                _FIX) from None
        if len(shape) != len(names) or any(n != 1 for n in shape[:n_lead]):
            raise CryoDataError(store, f"level {level_path!r} has shape {shape} for axes {names}",
                                "give one 3D volume (leading t/c axes of length 1)")
        scale = _scale(ds.get("coordinateTransformations"), len(names)) * outer
        if not (scale[-3:] > 0).all():
            raise CryoDataError(store, f"level {level_path!r} has scale {scale.tolist()}", "give positive voxel sizes")
        levels.append(OmeZarrLevel(store, level_path, shape[n_lead:], float(scale[-1]) * _UNIT_ANGSTROM[unit], n_lead))
    if not levels:
        raise CryoDataError(store, "lists no multiscale datasets", _FIX)
    return sorted(levels, key=lambda lv: lv.voxel_size)
