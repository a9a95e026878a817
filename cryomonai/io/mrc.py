"""Read and write MRC volumes (subtomograms, tomograms, templates) and load them in MONAI.

MRC (MRC2014, https://www.ccpem.ac.uk/mrc_format/mrc2014.php) is the cryo-EM volume format; we
read and write it with :mod:`mrcfile`. Arrays are in **file order (z, y, x)**: ``vol[z, y, x]``,
x fastest, the electron beam along z.

* :func:`read_mrc` → ``(float32 volume (z, y, x), voxel size in Å)``; modes 0 (int8), 1 (int16),
  2 (float32), 6 (uint16) and 12 (float16) are supported. A header voxel size of 0 means "unset"
  (``mrcfile.new`` writes 0 unless told otherwise) and is reported as **1.0 Å**, so the return
  type stays ``float`` and MONAI spacing stays valid; check :func:`read_mrc_header` if it matters.
* :func:`write_mrc` writes float32 (mode 2) or float16 (mode 12) atomically.
* :func:`check_volume` checks a volume is 3D, cubic and (optionally) ``box`` voxels wide.
* ``MrcReader`` is a :class:`monai.data.ImageReader`, so a bundle config can say
  ``{"_target_": "LoadImaged", "keys": ["image"], "reader": "cryomonai.io.MrcReader"}``.

Every problem with a file is a one-line :class:`~cryomonai.errors.CryoDataError` naming the file.

Example:
    >>> import tempfile, pathlib, numpy as np
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "sub.mrc"
    >>> _ = write_mrc(path, np.ones((4, 4, 4), np.float32), voxel_size=13.6)
    >>> vol, voxel = read_mrc(path)
    >>> vol.shape, vol.dtype, round(voxel, 2)
    ((4, 4, 4), dtype('float32'), 13.6)
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mrcfile
import mrcfile.utils
import numpy as np

from cryomonai.errors import CryoDataError
from cryomonai.io.atomic import atomic_path

__all__ = [
    "MRC_SUFFIXES",
    "SUPPORTED_MODES",
    "MrcInfo",
    "MrcReader",
    "check_volume",
    "read_mrc",
    "read_mrc_header",
    "write_mrc",
]

#: MRC modes we read (all returned as float32) and their numpy types.
SUPPORTED_MODES: dict[int, str] = {0: "int8", 1: "int16", 2: "float32", 6: "uint16", 12: "float16"}
#: File name suffixes ``MrcReader.verify_suffix`` accepts.
MRC_SUFFIXES: tuple[str, ...] = ("mrc", "mrcs", "map", "rec", "st", "ali")
_WRITE_DTYPES = (np.dtype(np.float32), np.dtype(np.float16))
_FIX_CONVERT = "convert it to float32 (mode 2), e.g. with IMOD `newstack -mode 2 in.mrc out.mrc`"


@dataclass(frozen=True)
class MrcInfo:
    """What an MRC header says about its data.

    Attributes:
        shape: data shape in file order: (z, y, x) for a volume, (y, x) for a single image,
            (n, z, y, x) for a volume stack.
        voxel_size: voxel size in Å along (z, y, x); 1.0 where the header leaves it at 0.
        mode: MRC mode number (see :data:`SUPPORTED_MODES`).
        voxel_set: False where the header leaves the voxel size unset (0, NaN or Inf on some axis).
    """

    shape: tuple[int, ...]
    voxel_size: tuple[float, float, float]
    mode: int
    voxel_set: bool = True


def read_mrc_header(path: str | os.PathLike) -> MrcInfo:
    """Read and check an MRC header without reading the data.

    Checks that the file exists, is an MRC file, has a supported mode and is not truncated (the
    header does not promise more data than the file holds).

    Raises:
        CryoDataError: naming ``path``, for each of those problems.
    """
    path = Path(path)
    if not path.is_file():
        problem = "is a directory, not an MRC file" if path.is_dir() else "file not found"
        raise CryoDataError(path, problem, "check the path (table paths are relative to the table's folder)")
    try:
        with mrcfile.open(path, header_only=True, permissive=False) as mrc:
            header = mrc.header
            voxel = mrc.voxel_size
            shape = tuple(int(n) for n in mrcfile.utils.data_shape_from_header(header))
            mode = int(header.mode)
            data_offset = int(header.nbytes) + int(header.nsymbt)
    except (ValueError, OSError, EOFError) as err:
        raise CryoDataError(path, f"not a readable MRC file ({err})", f"check it is an MRC volume; {_FIX_CONVERT}")
    if mode not in SUPPORTED_MODES:
        problem = f"unsupported MRC mode {mode} (we read modes {sorted(SUPPORTED_MODES)})"
        raise CryoDataError(path, problem, _FIX_CONVERT)
    if 0 in shape:
        problem = f"header says the data is {'x'.join(map(str, shape))} voxels, i.e. empty"
        raise CryoDataError(path, problem, "its header is damaged: copy or re-extract the file again")
    if path.suffix.lower() not in (".gz", ".bz2"):  # compressed files: mrcfile checks the length itself
        expected = data_offset + int(np.prod(shape)) * np.dtype(SUPPORTED_MODES[mode]).itemsize
        actual = path.stat().st_size
        if actual < expected:
            raise CryoDataError(
                path,
                f"file is truncated: its header promises {expected} bytes ({'x'.join(map(str, shape))} voxels, "
                f"mode {mode}) but the file has {actual}",
                "copy or re-extract the file again (an interrupted transfer or a full disk leaves files like this)",
            )
    # 0, NaN (0/0) or Inf (cella / 0) in the header: unset, as documented above
    voxel_set = all(0 < v < np.inf for v in (voxel.z, voxel.y, voxel.x))
    voxel_zyx = tuple(float(v) if 0 < v < np.inf else 1.0 for v in (voxel.z, voxel.y, voxel.x))
    return MrcInfo(shape=shape, voxel_size=voxel_zyx, mode=mode, voxel_set=voxel_set)  # type: ignore[arg-type]


def _check_is_volume(path: Path, shape: tuple[int, ...]) -> None:
    """Raise :class:`CryoDataError` unless ``shape`` is one 3D volume (z, y, x) with z > 1."""
    if len(shape) == 2 or (len(shape) == 3 and shape[0] == 1):
        raise CryoDataError(
            path, f"is a 2D image ({shape[-2]}x{shape[-1]}), not a volume", "give a 3D subtomogram or tomogram"
        )
    if len(shape) != 3:
        raise CryoDataError(path, f"is a stack of {shape[0]} volumes, not one volume", "split it, one file per volume")


def _check_finite(path: Path, data: np.ndarray) -> None:
    """Raise :class:`CryoDataError` if a floating-point ``data`` holds NaN or Inf voxels."""
    if data.dtype.kind == "f" and not np.isfinite(data).all():
        bad = int(data.size - np.count_nonzero(np.isfinite(data)))
        raise CryoDataError(
            path, f"contains {bad} NaN/Inf voxels", "re-extract or re-reconstruct it (NaN usually means a failed step)"
        )


def _read_volume(path: str | os.PathLike, mmap: bool, check_finite: bool) -> tuple[np.ndarray, MrcInfo]:
    """Read one 3D volume and its header info (see :func:`read_mrc` for ``mmap``/``check_finite``)."""
    path = Path(path)
    info = read_mrc_header(path)
    _check_is_volume(path, info.shape)
    try:
        if mmap:
            # the memmap keeps its own mapping, so it stays valid (read-only) after the file is closed
            with mrcfile.mmap(path, mode="r", permissive=False) as mrc:
                data = mrc.data
        else:
            with mrcfile.open(path, permissive=False) as mrc:
                data = np.empty(mrc.data.shape, dtype=np.float32)  # native byte order (a file may be big-endian)
                data[...] = mrc.data
    except (ValueError, OSError, EOFError, OverflowError) as err:  # OverflowError: np.memmap of a bad size
        raise CryoDataError(path, f"cannot read the MRC data ({err})", _FIX_CONVERT)
    if check_finite:
        _check_finite(path, data)
    return data, info


def read_mrc(
    path: str | os.PathLike, mmap: bool = False, check_finite: bool | None = None
) -> tuple[np.ndarray, float]:
    """Read an MRC volume.

    Args:
        path: the ``.mrc`` (or ``.map``, ``.rec`` ...) file.
        mmap: memory-map the file read-only (for big tomograms) instead of reading it. The array
            is then returned **in its stored dtype and unconverted** (a read-only
            :class:`numpy.memmap`): slice the part you need first, then ``.astype(np.float32)``.
        check_finite: raise if any voxel is NaN/Inf. Default: on for normal reads, off for
            ``mmap`` (it would read the whole file).

    Returns:
        ``(volume, voxel_size)``: volume (z, y, x), float32 (or the stored dtype if ``mmap``);
        voxel size along x in Å (1.0 when the header leaves it at 0).

    Raises:
        CryoDataError: missing, non-MRC or truncated file, unsupported mode, a 2D image or a
            volume stack instead of one volume, NaN/Inf voxels.
    """
    check = (not mmap) if check_finite is None else check_finite
    data, info = _read_volume(path, mmap=mmap, check_finite=check)
    return data, info.voxel_size[2]


def write_mrc(
    path: str | os.PathLike,
    volume: Any,
    voxel_size: float | Sequence[float] = 1.0,
    dtype: np.dtype | type = np.float32,
) -> Path:
    """Write a volume (z, y, x) (or an image (y, x)) to an MRC file, atomically.

    Args:
        path: output file; the parent folder must exist. An existing file is replaced.
        volume: array (z, y, x) or (y, x); a torch tensor is moved to the CPU.
        voxel_size: Å per voxel: one number, or three in (z, y, x) order.
        dtype: ``np.float32`` (mode 2) or ``np.float16`` (mode 12, half the disk space).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: for another dtype or dimensionality (a programming error).
        CryoDataError: if the volume holds NaN/Inf or overflows float16 (nothing is written).
    """
    path = Path(path)
    dtype = np.dtype(dtype)
    if dtype not in _WRITE_DTYPES:
        raise ValueError(f"write_mrc writes float32 or float16, got {dtype}")
    if hasattr(volume, "detach"):  # torch tensor on any device
        volume = volume.detach().cpu().numpy()
    source = np.asarray(volume)
    if source.ndim not in (2, 3):
        raise ValueError(f"write_mrc expects a (z, y, x) volume or a (y, x) image, got shape {source.shape}")
    _check_finite(path, source)
    peak = float(np.abs(source).max()) if source.size else 0.0
    if peak > float(np.finfo(dtype).max):
        raise CryoDataError(path, f"values up to {peak:.3g} overflow {dtype.name}", "write float32 or normalise")
    data = np.ascontiguousarray(source, dtype=dtype)
    voxel = (float(voxel_size),) * 3 if np.isscalar(voxel_size) else tuple(float(v) for v in voxel_size)
    with atomic_path(path, size=1024 + data.nbytes) as tmp:  # header + data
        with mrcfile.new(tmp) as mrc:
            mrc.set_data(data)
            mrc.voxel_size = voxel[::-1]  # mrcfile takes (x, y, z)
    return path


def check_volume(volume: Any, path: str | os.PathLike, box: int | None = None) -> None:
    """Check that a subtomogram is a cubic 3D volume, ``box`` voxels wide if given.

    Args:
        volume: the array (z, y, x), or just its shape.
        path: the file it came from (for the message).
        box: expected edge length in voxels, or ``None`` for any cubic size.

    Raises:
        CryoDataError: e.g. ``"a.mrc: volume is 32x32x30 (z×y×x), not cubic — fix: ..."``.
    """
    shape = tuple(int(n) for n in (volume.shape if hasattr(volume, "shape") else volume))
    text = "x".join(map(str, shape))
    if len(shape) != 3:
        raise CryoDataError(path, f"expected a 3D volume (z, y, x), got shape {text}", "give a 3D subtomogram")
    if len(set(shape)) != 1:
        raise CryoDataError(path, f"volume is {text} (z×y×x), not cubic", "re-extract subtomograms with a cubic box")
    if box is not None and shape[0] != int(box):
        raise CryoDataError(
            path, f"volume is {text} but a box of {box} voxels is expected",
            f"re-extract at box {box}, or set box to {shape[0]} to match the data",
        )


def __getattr__(name: str) -> Any:
    """Build ``MrcReader`` on first access (PEP 562).

    Subclassing :class:`monai.data.ImageReader` imports MONAI, which takes seconds; deferring it
    keeps ``read_mrc``/``write_mrc`` (and CLIs that only use them) fast to import.
    ``from cryomonai.io.mrc import MrcReader``, ``pydoc.locate`` and pickling all go through here.
    """
    if name == "MrcReader":
        return _mrc_reader_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@functools.cache
def _mrc_reader_class() -> type:
    """Define ``MrcReader`` (once; the same class object is returned afterwards).

    MONAI is imported here, the module's only function-local imports: reading and writing MRC files
    (the simulator's worker processes, ``cryomonai extract``) must not wait seconds for MONAI.
    """
    from monai.data import ImageReader
    from monai.data.utils import is_supported_format
    from monai.utils import MetaKeys, SpaceKeys, ensure_tuple

    def _reader_meta(info: MrcInfo, shape: tuple[int, ...], stacked: bool) -> dict:
        """MONAI meta dict of a volume (z, y, x): affine diag(voxel size, 1), RAS, no channel unless stacked."""
        affine = np.diag([*info.voxel_size, 1.0])
        return {
            MetaKeys.AFFINE: affine,
            MetaKeys.ORIGINAL_AFFINE: affine.copy(),
            MetaKeys.SPATIAL_SHAPE: np.asarray(shape),
            MetaKeys.SPACE: SpaceKeys.RAS,
            MetaKeys.ORIGINAL_CHANNEL_DIM: 0 if stacked else float("nan"),
            MetaKeys.PIXDIM: np.array([1.0, *info.voxel_size, 1.0, 1.0, 1.0, 1.0]),  # NIfTI layout
            "voxel_size": np.asarray(info.voxel_size),
            "mrc_mode": info.mode,
        }

    class MrcReader(ImageReader):
        """MONAI image reader for MRC volumes, for ``LoadImage(d)(reader="cryomonai.io.MrcReader")``.

        MONAI sees each volume **as stored**: spatial axes (z, y, x), no channel (add one with
        ``ensure_channel_first=True`` or ``EnsureChannelFirstd``), affine
        ``diag(voxel_z, voxel_y, voxel_x, 1)`` in Å (the header origin is ignored), so
        ``MetaTensor.pixdim`` is the voxel size along (z, y, x) and ``Spacingd`` resamples in Å.
        ``space`` is RAS so MONAI never flips axes; the MRC frame is not a patient frame. Meta
        keys: ``affine``, ``original_affine``, ``spatial_shape`` (the original (z, y, x) shape),
        ``pixdim`` (NIfTI layout: ``[1, vz, vy, vx, 1, 1, 1, 1]``), ``voxel_size`` (z, y, x),
        ``mrc_mode``; ``LoadImage`` adds ``filename_or_obj``.

        Several files given together are stacked as channels (same shape and voxel size).

        Note:
            with a user-named reader, ``LoadImage`` catches reader exceptions and re-raises a
            ``RuntimeError`` whose text contains our one-line :class:`CryoDataError`.

        Args:
            check_finite: raise :class:`CryoDataError` for NaN/Inf voxels.
            kwargs: ignored (``LoadImage`` passes its extra arguments to every reader).
        """

        def __init__(self, check_finite: bool = True, **kwargs: Any) -> None:
            super().__init__()
            self.check_finite = check_finite

        def verify_suffix(self, filename: Sequence[str | os.PathLike] | str | os.PathLike) -> bool:
            """True if every file name ends in an MRC suffix (:data:`MRC_SUFFIXES`)."""
            return is_supported_format(filename, MRC_SUFFIXES)

        def read(self, data: Sequence[str | os.PathLike] | str | os.PathLike, **kwargs: Any) -> list:
            """Read each file: a list of ``(float32 volume (z, y, x), MrcInfo, path)``."""
            return [(*_read_volume(p, mmap=False, check_finite=self.check_finite), p) for p in ensure_tuple(data)]

        def get_data(self, img: list) -> tuple[np.ndarray, dict]:
            """Stack the volumes read by :meth:`read`; return ``(array, meta dict)``."""
            arrays = [volume for volume, _, _ in img]
            _, info, first = img[0]
            for volume, other, path in img[1:]:
                if volume.shape != arrays[0].shape or other.voxel_size != info.voxel_size:
                    problem = f"differs in shape or voxel size from {first}"
                    raise CryoDataError(path, problem, "stack files of one shape and voxel size")
            meta = _reader_meta(info, arrays[0].shape, stacked=len(arrays) > 1)
            return (np.stack(arrays) if len(arrays) > 1 else arrays[0]), meta

    MrcReader.__module__ = __name__
    MrcReader.__qualname__ = "MrcReader"
    return MrcReader
