"""From tomograms and particle picks to subtomograms: extraction, rescaling, edge handling, a dataset.

A *picks table* is a :class:`~cryomonai.io.ParticleTable` with ``tomogram`` and ``x``, ``y``, ``z``
on every row (RELION ``rlnMicrographName`` / ``rlnTomoName`` + ``rlnCoordinateX/Y/Z``, or the CSV
columns ``tomogram,x,y,z``; a plain ``x y z`` text file such as IMOD ``model2point`` output via
:func:`read_picks`). Conventions:

* **Coordinates** are voxel indices of the tomogram counted from 0 (the centre of the first voxel
  is 0), in voxels of ``pick_voxel_size`` Å (default: the tomogram's own voxel size, so a pick
  made on a 4× binned tomogram is given with ``pick_voxel_size`` = 4 × its pixel size when
  extracting from the unbinned one). They are rounded to the nearest voxel.
* **Tomogram paths** relative to the table's folder, as ``rlnImageName`` paths are; or URLs of
  OME-Zarr images (``https://``, ``s3://``, ``file://``; :mod:`cryomonai.io.stores`), kept as given.
* **Box**: the subtomogram is ``box³`` voxels with the pick at voxel ``box // 2`` on each axis,
  axes (z, y, x), beam along z. With ``voxel_size`` (Å) the source cube of
  ``round(box · voxel_size / tomogram voxel size)`` voxels is resampled to ``box³`` by Fourier
  cropping (binning without aliasing) or Fourier padding; the exact output voxel size is
  ``tomogram voxel size · source box / box``.
* **Edges** (``edge``): a box that crosses the tomogram's border is

  - ``"report"`` (default): left out, and listed in ``rejected_picks.csv`` (table row, tomogram,
    coordinates, reason) with one logged warning giving the count — never silently dropped;
  - ``"pad"``: extracted, the missing part filled with the tomogram's mean;
  - ``"error"``: a :class:`~cryomonai.errors.CryoDataError` naming the first such row.

  A pick whose centre lies **outside** the tomogram cannot be padded: under ``"report"`` and
  ``"pad"`` it is rejected (reason ``centre outside the tomogram``), under ``"error"`` it stops.

Tomograms are MRC files or OME-Zarr images (a ``*.zarr`` folder, as the CZ cryo-ET data portal and
copick store them), opened lazily by :func:`~cryomonai.io.tomogram.open_tomogram` (an MRC file
memory-mapped, an OME-Zarr level read by chunks): only the voxels of each box are read, so a
tomogram larger than the memory works. Of an OME-Zarr image's resolution levels the coarsest that
is still at least as fine as ``voxel_size`` is read; coordinates are in voxels of its finest level
unless ``pick_voxel_size`` says otherwise. :func:`extract_subtomograms`
writes a particle-table dataset (MRC files + ``particles.star``/``.csv``);
:class:`cryomonai.data.picks.PickDataset` extracts on the fly, so a bundle can classify straight
from tomogram + picks. This module needs no MONAI (the ``cryomonai extract`` command stays quick).

Rows are identified by the table's index (0-based; messages and ``rejected_picks.csv`` say the
1-based row).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import starfile
import torch
from tqdm.auto import tqdm

from cryomonai.errors import ConfigError, CryoDataError
from cryomonai.io.atomic import atomic_write
from cryomonai.io.copick import is_copick_config, read_copick_picks
from cryomonai.io.mrc import write_mrc
from cryomonai.io.relion5 import is_relion5_particles, read_relion5_picks
from cryomonai.io.stores import is_url
from cryomonai.io.table import ParticleTable, read_particle_table, write_particle_table
from cryomonai.io.tomogram import TomogramLevel, choose_level, open_tomogram, tomogram_levels

__all__ = [
    "EDGE_POLICIES",
    "ExtractionResult",
    "PickExtractor",
    "REJECTED_FILE",
    "apply_edge_policy",
    "extract_subtomograms",
    "fourier_resize",
    "locate_picks",
    "read_picks",
    "tomogram_paths",
]

logger = logging.getLogger(__name__)

EDGE_POLICIES: tuple[str, ...] = ("report", "pad", "error")
REJECTED_FILE = "rejected_picks.csv"
_TEXT_SUFFIXES = (".txt", ".coords", ".pts", ".xyz", ".dat")


# ----------------------------------------------------------------------------- reading picks


def tomogram_paths(table: ParticleTable) -> pd.Series:
    """Absolute tomogram path of every row (relative ones are taken relative to the table's folder; URLs as given)."""
    folder = table.source.resolve().parent if table.source is not None else Path.cwd()
    return pd.Series(
        [None if v is None or pd.isna(v) else str(v) if is_url(v)
         else os.path.normpath(folder / os.path.expanduser(str(v))) for v in table.df["tomogram"]],
        index=table.df.index, dtype=object,
    )


def read_picks(path: str | os.PathLike, tomogram: str | os.PathLike | None = None,
               tomograms_star: str | os.PathLike | None = None, copick: dict[str, Any] | None = None) -> ParticleTable:
    """Read particle picks: a STAR/CSV particle table, a RELION-5 particles STAR file, a copick
    project's configuration JSON, or ``x y z`` text.

    Args:
        path: ``.star`` / ``.csv`` (see :mod:`cryomonai.io.table`), or whitespace-separated text
            (``.txt``, ``.coords``, ``.pts``, ``.xyz``, ``.dat``) whose **last three** columns are
            x, y, z (IMOD ``model2point`` writes ``x y z``, or ``object contour x y z``).
        tomogram: the tomogram of every pick; required for a text file, and replaces the table's
            ``tomogram`` column when given.
        tomograms_star: for a RELION-5 particles file (``rlnCenteredCoordinateX/Y/ZAngst``), its
            ``tomograms.star`` (default: next to ``path``); see :mod:`cryomonai.io.relion5`.
        copick: for a copick project, the keyword arguments of
            :func:`~cryomonai.io.copick.read_copick_picks` (``voxel_size``, ``tomo_type``,
            ``user_id``, ``session_id``, ``objects``, ``runs``).

    Returns:
        the table (``source`` = ``path``); ``tomogram`` is absolute when ``tomogram`` is given.

    Raises:
        CryoDataError: unreadable file, or no coordinates.
        ConfigError: a text file without ``tomogram``, or copick/RELION options that do not fit the file.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if is_copick_config(path):
        if tomogram is not None:
            raise ConfigError(path, "a copick project names its tomograms", "drop --tomogram; choose copick_tomo_type")
        return read_copick_picks(path, **(copick or {}))
    if copick:
        raise ConfigError(path, "copick options given, but this is not a copick configuration JSON",
                          "give the project's config JSON as the picks, or drop the copick options")
    if is_relion5_particles(path):
        if tomogram is not None:
            raise ConfigError(path, "a RELION-5 particles file names its tomograms (rlnTomoName, tomograms.star)",
                              "drop --tomogram; give --tomograms_star if tomograms.star is not next to the file")
        return read_relion5_picks(path, tomograms_star)
    if tomogram is None:
        if suffix in _TEXT_SUFFIXES:
            raise ConfigError(path, "a coordinate text file does not name its tomogram", "pass --tomogram <file.mrc>")
        return read_particle_table(path, check_files=False)
    if not path.is_file():
        raise CryoDataError(path, "picks file not found", "check the path")
    tomo = str(tomogram) if is_url(tomogram) else str(Path(tomogram).expanduser().resolve())
    with tempfile.TemporaryDirectory() as tmp:  # rewrite the tomogram column, then read as a table
        copy = Path(tmp) / ("picks.star" if suffix == ".star" else "picks.csv")
        if suffix == ".star":
            _write_star_with_tomogram(path, copy, tomo)
        else:
            df = _read_text_coordinates(path) if suffix in _TEXT_SUFFIXES else _read_csv_raw(path)
            df.drop(columns=[c for c in ("tomogram",) if c in df]).assign(tomogram=tomo).to_csv(copy, index=False)
        table = read_particle_table(copy, check_files=False)
    return ParticleTable(table.df, table.class_names, path)


def _read_text_coordinates(path: Path) -> pd.DataFrame:
    """The last three numeric columns of a whitespace-separated text file as x, y, z."""
    try:
        values = np.loadtxt(path, ndmin=2, comments="#")
    except (OSError, ValueError) as err:
        raise CryoDataError(path, f"cannot read coordinates ({err})", "give rows of 'x y z' numbers")
    if values.shape[0] == 0 or values.shape[1] < 3:
        raise CryoDataError(path, f"needs rows of at least 3 columns (x y z), found shape {values.shape}",
                            "give 'x y z' rows")
    return pd.DataFrame({"x": values[:, -3], "y": values[:, -2], "z": values[:, -1]})


def _read_csv_raw(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise CryoDataError(path, f"cannot parse the CSV file ({err})", "give columns x,y,z[,label]")


def _write_star_with_tomogram(path: Path, copy: Path, tomogram: str) -> None:
    """Copy a STAR file, with ``rlnMicrographName`` of its particle loop set to ``tomogram``."""
    try:
        blocks = starfile.read(path, always_dict=True)
    except Exception as err:  # starfile raises many kinds of errors for a malformed file
        raise CryoDataError(path, f"cannot parse the STAR file ({type(err).__name__}: {err})", "check it")
    name = next((k for k, v in blocks.items() if isinstance(v, pd.DataFrame) and "rlnCoordinateX" in v), None)
    if name is None:
        raise CryoDataError(path, "no loop with rlnCoordinateX/Y/Z", "give a STAR file of picks")
    loop = blocks[name].drop(columns=[c for c in ("rlnMicrographName", "rlnTomoName") if c in blocks[name]])
    blocks[name] = loop.assign(rlnMicrographName=tomogram)
    starfile.write(blocks, copy)


# ----------------------------------------------------------------------------- geometry


def fourier_resize(volume: np.ndarray | torch.Tensor, size: Sequence[int]) -> np.ndarray | torch.Tensor:
    """Resample a volume (…, D, H, W) to ``size`` (d, h, w) by Fourier cropping (or zero padding).

    The spectrum is cut to (or padded with zeros to) the new size, so shrinking is a band-limited
    binning (no aliasing) and the mean is kept. Voxel ``n // 2`` of the input and of the output
    sit at the same place (a sub-voxel phase shift aligns them when the size ratio needs it), so
    a particle centred in the input box stays centred. Follows the input's type and device.

    Args:
        volume: array or tensor, last three axes (z, y, x).
        size: output (d, h, w).

    Example:
        >>> vol = np.zeros((8, 8, 8), np.float32); vol[4, 4, 4] = 8.0
        >>> out = fourier_resize(vol, (4, 4, 4))
        >>> out.shape, round(float(out.mean()), 6), [int(i) for i in np.unravel_index(out.argmax(), out.shape)]
        ((4, 4, 4), 0.015625, [2, 2, 2])
    """
    x = torch.as_tensor(volume)
    in_size, size = tuple(x.shape[-3:]), tuple(int(n) for n in size)
    if in_size == size:
        return volume
    dims = (-3, -2, -1)
    spec = torch.fft.fftn(x.to(torch.float64), dim=dims)
    for axis, (n_in, n_out) in zip(dims, zip(in_size, size)):
        shift = n_in // 2 - (n_out // 2) * n_in / n_out  # input position of output voxel n_out // 2, minus n_in // 2
        if abs(shift) > 1e-9:
            k = torch.fft.fftfreq(n_in, device=x.device, dtype=torch.float64)
            view = [1] * spec.ndim
            view[axis] = n_in
            spec = spec * torch.exp(2j * torch.pi * k * shift).reshape(view)  # f(x + shift)
    spec = torch.fft.fftshift(spec, dim=dims)
    out = torch.zeros((*x.shape[:-3], *size), dtype=spec.dtype, device=x.device)
    src, dst = [], []
    for n_in, n_out in zip(in_size, size):
        m = min(n_in, n_out)
        src.append(slice(n_in // 2 - m // 2, n_in // 2 - m // 2 + m))
        dst.append(slice(n_out // 2 - m // 2, n_out // 2 - m // 2 + m))
    out[(..., *dst)] = spec[(..., *src)]
    result = torch.fft.ifftn(torch.fft.ifftshift(out, dim=dims), dim=dims).real * (np.prod(size) / np.prod(in_size))
    result = result.to(x.dtype if x.is_floating_point() else torch.float32)
    return result.numpy() if isinstance(volume, np.ndarray) else result


def locate_picks(
    table: ParticleTable, box: int, voxel_size: float | None = None, pick_voxel_size: float | None = None
) -> pd.DataFrame:
    """Where each pick's box lies in its tomogram (reads headers only).

    Args:
        table: picks; its index identifies the rows (a subset keeps the original row numbers).
        box: output edge (voxels); voxel_size, pick_voxel_size: as in :func:`extract_subtomograms`.

    Returns:
        one row per table row (same index): ``tomogram_path``, ``tomogram_level`` (the OME-Zarr level
        read, :func:`~cryomonai.io.tomogram.choose_level`; ``""`` for MRC), ``tomogram_voxel`` (Å, of
        that level), ``cz, cy, cx`` (centre, voxels of that level), ``source_box`` (voxels read before
        resampling),
        ``status``: ``"ok"``, ``"edge"`` (box crosses the border) or ``"outside"`` (centre outside).

    Raises:
        CryoDataError: no coordinates, a missing/unreadable tomogram, a 2D file.
        ConfigError: a bad box.
    """
    where = table.source or "picks table"
    if int(box) < 2:
        raise ConfigError(where, f"box {box} is too small", "give a box of at least 2 voxels (e.g. 32)")
    for key, size in (("voxel_size", voxel_size), ("pick_voxel_size", pick_voxel_size)):
        if size is not None and not 0 < float(size) < np.inf:
            raise ConfigError(f"{where}, {key}", f"{size} is not a voxel size", "give a positive size in Å (e.g. 20)")
    df = table.df
    missing = df[["tomogram", "x", "y", "z"]].isna().any(axis=1).to_numpy()
    if missing.any():
        row = int(df.index[np.argmax(missing)]) + 1
        raise CryoDataError(f"{where}, row {row}", "has no tomogram or no x, y, z",
                            "give every pick its tomogram and x, y, z")
    paths = tomogram_paths(table)
    levels = _tomogram_levels(where, df.index, paths)
    _check_voxel_sizes(where, df.index, paths, levels, voxel_size, pick_voxel_size)
    chosen = {p: choose_level(lv, voxel_size) for p, lv in levels.items()}
    tomo_voxel = np.array([chosen[p].voxel_size for p in paths])
    pick_voxel = np.full(len(df), float(pick_voxel_size)) if pick_voxel_size else [levels[p][0].voxel_size for p in paths]
    scale = np.asarray(pick_voxel, dtype=float) / tomo_voxel
    xyz = df[["x", "y", "z"]].to_numpy(dtype=float) * scale[:, None]
    centre = np.rint(xyz[:, ::-1]).astype(np.int64)  # (n, 3) zyx
    if voxel_size is None:
        source = np.full(len(df), int(box))
    else:
        source = np.maximum(2, np.rint(box * float(voxel_size) / tomo_voxel))
    shape = np.array([chosen[p].shape for p in paths], dtype=np.int64)  # (n, 3) zyx
    start = centre - (source[:, None] // 2).astype(np.int64)
    inside = ((centre >= 0) & (centre < shape)).all(axis=1)
    fits = ((start >= 0) & (start + source[:, None] <= shape)).all(axis=1)
    status = np.where(~inside, "outside", np.where(fits, "ok", "edge"))
    return pd.DataFrame({"tomogram_path": paths.to_numpy(), "tomogram_level": [chosen[p].level for p in paths],
                         "tomogram_voxel": tomo_voxel, "cz": centre[:, 0],
                         "cy": centre[:, 1], "cx": centre[:, 2], "source_box": source.astype(np.int64),
                         "status": status}, index=df.index)


def _check_voxel_sizes(where: object, rows: pd.Index, paths: pd.Series, levels: dict[str, list[TomogramLevel]],
                       voxel_size: float | None, pick_voxel_size: float | None) -> None:
    """An MRC header that leaves the voxel size unset (read as 1 Å): an error where a size in Å must be
    converted to its voxels (``voxel_size``, ``pick_voxel_size``), else a warning that the output's is 1 Å."""
    first: dict[str, int] = {}
    for row, p in zip(rows + 1, paths):
        first.setdefault(p, int(row))
    for p, row in first.items():
        if levels[p][0].voxel_set:
            continue
        flags = " and ".join(f"--{k}" for k, v in (("voxel_size", voxel_size), ("pick_voxel_size", pick_voxel_size)) if v)
        if flags:
            raise CryoDataError(f"{where}, row {row}", f"tomogram {p}: its header leaves the voxel size unset (0), so "
                                f"{flags} cannot be converted to its voxels",
                                "set it in the header (IMOD: `alterheader -del 10,10,10 tomo.mrc`, in Å)")
        logger.warning("%s: its header leaves the voxel size unset (0): the subtomograms' is recorded as 1 Å; set it "
                       "in the header (IMOD: `alterheader -del 10,10,10 tomo.mrc`) for a true rlnPixelSize", p)
        return  # once


def _tomogram_levels(where: object, rows: pd.Index, paths: pd.Series) -> dict[str, list[TomogramLevel]]:
    """The resolution levels of every distinct tomogram; errors name the first row that uses it."""
    levels: dict[str, list[TomogramLevel]] = {}
    for row, p in zip(rows + 1, paths):
        if p in levels:
            continue
        try:
            levels[p] = tomogram_levels(p)
        except CryoDataError as err:
            missing = not is_url(p) and not Path(p).is_file()  # else the file's own problem, with its own fix
            fix = "tomogram paths are relative to the picks table's folder; fix it or pass --tomogram" if missing else err.fix
            raise CryoDataError(f"{where}, row {row}", f"tomogram {err.where}: {err.problem}", fix) from None
    return levels


_REASONS = {"edge": "box crosses the tomogram edge", "outside": "centre outside the tomogram"}


def apply_edge_policy(
    table: ParticleTable, located: pd.DataFrame, edge: str = "report", rejected_file: str | os.PathLike | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split located picks into (kept, rejected) by ``edge``; report the rejected ones.

    ``rejected`` holds the table's columns plus ``row`` (1-based table row) and ``reason``; it is
    written to ``rejected_file`` (always, header only when empty, so no stale list survives) and
    one warning with the count is logged.

    Raises:
        ConfigError: an unknown policy.
        CryoDataError: (``"error"``) a box crossing the edge / a centre outside.
    """
    where = table.source or "picks table"
    if edge not in EDGE_POLICIES:
        raise ConfigError(where, f"unknown edge policy {edge!r}", f"use one of {list(EDGE_POLICIES)}")
    bad = located["status"].isin(["outside"] if edge == "pad" else ["edge", "outside"]).to_numpy()
    if edge == "error" and bad.any():
        first = int(np.argmax(bad))
        xyz = tuple(table.df[["x", "y", "z"]].iloc[first])
        raise CryoDataError(
            f"{where}, row {table.df.index[first] + 1}",
            f"pick at x,y,z = {xyz}: {_REASONS[located['status'].iloc[first]]} ({int(bad.sum())} of {len(bad)} picks)",
            "use --edge pad (fill with the tomogram mean; inference: --infer_edge pad) or --edge report (leave them "
            "out, listed), or a smaller --box",
        )
    rejected = table.df[bad].copy()
    rejected.insert(0, "row", table.df.index[bad] + 1)
    rejected.insert(1, "reason", [_REASONS[s] for s in located["status"][bad]])
    rejected["tomogram"] = located["tomogram_path"][bad]
    rejected = rejected.drop(columns=[c for c in ("path", "label_index") if c in rejected])
    if rejected_file is not None:
        Path(rejected_file).parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(rejected_file, "w", newline="") as f:
            rejected.to_csv(f, index=False)
    if bad.any():
        listed = f", listed in {rejected_file}" if rejected_file is not None else ""
        logger.warning("%s: %d of %d picks rejected (%s)%s", where, int(bad.sum()), len(bad),
                       ", ".join(f"{n} {r}" for r, n in rejected["reason"].value_counts().items()), listed)
    return located[~bad], rejected


# ----------------------------------------------------------------------------- extraction


class PickExtractor:
    """Extract boxes from memory-mapped tomograms (opened on first use, per process).

    Args:
        box: output edge length (voxels).
        normalise: zero mean, unit standard deviation per subtomogram.
    """

    def __init__(self, box: int, normalise: bool = True) -> None:
        self.box, self.normalise = int(box), normalise
        self._tomograms: dict[tuple[str, str], Any] = {}
        self._means: dict[tuple[str, str], float] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_tomograms": {}}  # never pickle a memmap (DataLoader workers reopen)

    def tomogram(self, path: str, level: str = "") -> Any:
        """Level ``level`` of tomogram ``path`` (z, y, x), read lazily, stored dtype (:func:`open_tomogram`)."""
        if (path, level) not in self._tomograms:
            self._tomograms[path, level] = open_tomogram(path, level)
        return self._tomograms[path, level]

    def mean(self, path: str, level: str = "") -> float:
        """The tomogram's mean, computed once in z-slabs of ≤ 64 MB (bounded memory)."""
        if (path, level) not in self._means:
            tomo = self.tomogram(path, level)
            step = max(1, int(64e6 // max(1, 4 * tomo.shape[1] * tomo.shape[2])))
            total = sum(float(tomo[z : z + step].sum(dtype=np.float64)) for z in range(0, tomo.shape[0], step))
            self._means[path, level] = total / tomo.size
        return self._means[path, level]

    def __call__(self, pick: pd.Series) -> np.ndarray:
        """The subtomogram (box, box, box) float32 of one row of :func:`locate_picks`."""
        path, level = pick["tomogram_path"], pick.get("tomogram_level", "")
        tomo, size = self.tomogram(path, level), int(pick["source_box"])
        centre = np.array([pick["cz"], pick["cy"], pick["cx"]], dtype=np.int64)
        start = centre - size // 2
        lo, hi = np.maximum(start, 0), np.minimum(start + size, tomo.shape)
        src = tuple(slice(a, b) for a, b in zip(lo, hi))
        if (lo - start).any() or (hi - start - size).any():  # crosses the edge: pad with the mean
            out = np.full((size,) * 3, self.mean(path, level), dtype=np.float32)
            out[tuple(slice(a - s, b - s) for a, b, s in zip(lo, hi, start))] = tomo[src]
        else:
            out = np.array(tomo[src], dtype=np.float32)
        if not np.isfinite(out).all():
            raise CryoDataError(path, f"NaN/Inf voxels in the box at z,y,x = {tuple(centre)}",
                                "re-reconstruct the tomogram (NaN usually means a failed step)")
        if size != self.box:
            out = fourier_resize(out, (self.box,) * 3)
        if self.normalise:
            out = out - out.mean()
            std = out.std()
            out = out / std if std > 0 else out
        return np.ascontiguousarray(out, dtype=np.float32)


@dataclass
class ExtractionResult:
    """What :func:`extract_subtomograms` wrote: the table, counts and the output voxel size (Å)."""

    table: Path
    n_extracted: int
    rejected: pd.DataFrame
    voxel_size: float


def extract_subtomograms(
    picks: ParticleTable | str | os.PathLike,
    out_dir: str | os.PathLike,
    box: int = 32,
    voxel_size: float | None = None,
    edge: str = "report",
    normalise: bool = True,
    pick_voxel_size: float | None = None,
    tomogram: str | os.PathLike | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> ExtractionResult:
    """Extract a subtomogram at every pick and write the particle-table dataset.

    Writes ``out_dir/subtomograms/<row>.mrc`` (float32; ``<row>`` is the 1-based row of the
    picks table, as in ``rejected_picks.csv`` and error messages), ``out_dir/particles.star`` and
    ``particles.csv`` (every column of the picks, ``rlnImageName``, the tomogram path relative to
    ``out_dir``, ``rlnPixelSize`` = the subtomograms' voxel size) and ``out_dir/rejected_picks.csv``.

    Args:
        picks: a picks table or its file (see :func:`read_picks`).
        out_dir: output folder (created).
        box: subtomogram edge in voxels (of ``voxel_size``).
        voxel_size: target voxel size in Å (None: the tomogram's; no resampling).
        edge: ``"report"``, ``"pad"`` or ``"error"`` (see the module docstring).
        normalise: zero mean, unit std per subtomogram.
        pick_voxel_size: voxel size (Å) of the coordinates (None: the tomogram's).
        tomogram: the tomogram of all picks (overrides the table's column; needed for text files).
        overwrite: replace an existing ``particles.star`` in ``out_dir``.
        progress: show a progress bar.

    Raises:
        CryoDataError: a bad table or tomogram, or (``edge="error"``) a pick at the border.
        ConfigError: an existing output (without ``overwrite``), a bad box or edge policy.
    """
    table = picks if isinstance(picks, ParticleTable) else read_picks(picks, tomogram)
    out = Path(out_dir)
    if (out / "particles.star").exists() and not overwrite:
        raise ConfigError(out, "already holds particles.star", "choose another --out, or pass --overwrite")
    located = locate_picks(table, box, voxel_size, pick_voxel_size)  # headers only: its errors leave nothing behind
    try:
        (out / "subtomograms").mkdir(parents=True, exist_ok=True)
    except OSError as err:  # a file where a folder should be, no permission
        raise CryoDataError(out, f"cannot create the output folder ({err.strerror or err})",
                            "choose an --out folder you may write to") from err
    kept, rejected = apply_edge_policy(table, located, edge, out / REJECTED_FILE)
    if len(kept) == 0:
        outside = bool((located["status"] == "outside").all())
        fix = ("every centre lies outside its tomogram: are the coordinates in this tomogram's voxels? (picks made on "
               "a binned tomogram: --pick_voxel_size; coordinates in Å: divide them by the voxel size)" if outside
               else "use --edge pad (inference: --infer_edge pad) or a smaller --box")
        raise CryoDataError(table.source or "picks", f"no pick could be extracted ({len(rejected)} rejected; see "
                            f"{out / REJECTED_FILE})", fix)
    extractor = PickExtractor(box, normalise)
    voxels = kept["tomogram_voxel"] * kept["source_box"] / int(box)  # exact output voxel size (Å)
    files = [out.resolve() / "subtomograms" / f"{int(row) + 1:06d}.mrc" for row in kept.index]
    for (_, pick), file, voxel in tqdm(zip(kept.iterrows(), files, voxels), total=len(kept), desc="extracting",
                                       disable=not progress):
        write_mrc(file, extractor(pick), voxel_size=float(voxel))
    df = table.df.loc[kept.index].copy()
    df["path"], df["rlnPixelSize"] = [str(f) for f in files], voxels.to_numpy()
    df["tomogram"] = [_relative(p, out) for p in kept["tomogram_path"]]
    star = write_particle_table(ParticleTable(df, table.class_names), out / "particles.star")
    write_particle_table(ParticleTable(df, table.class_names), out / "particles.csv")
    return ExtractionResult(star, len(df), rejected, float(voxels.iloc[0]))


def _relative(path: str, folder: Path) -> str:
    if is_url(path):
        return path
    try:
        return os.path.relpath(path, folder.resolve())
    except ValueError:  # another drive
        return path
