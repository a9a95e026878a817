"""WarpTools template-matching picks: coordinates as fractions of the tomogram, as a picks table.

WarpTools' ``ts_template_match`` writes one STAR file per tomogram into the tilt-series folder's
``matching/``, named after the tomogram it searched (``<tomogram stem>_<template>.star``, e.g.
``TS_01_10.00Apx_emd_15854_flipx.star``, or ``<tomogram stem><override suffix>.star``; the tomogram is
``reconstruction/TS_01_10.00Apx.mrc``). Its one loop holds, per candidate (the position in Å divided by
the volume's physical size, ``TiltSeries.MatchFull.cs``),

=============================  ==================================================================
``rlnCoordinateX/Y/Z``         the position as a **fraction** of the tomogram's size along x, y, z (0–1)
``rlnAngleRot/Tilt/Psi``       RELION ZYZ Euler angles (degrees)
``rlnMicrographName``          the tilt series, ``<name>.tomostar``
``rlnAutopickFigureOfMerit``   the candidate's score
=============================  ==================================================================

(the layout `warp-tm-vis <https://github.com/warpem/warp-tm-vis>`_, Warp's own viewer, reads: voxel =
fraction × the tomogram's size). :func:`~cryomonai.io.table.read_particle_table` reads such a file like
any picks table through :func:`read_warp_loop`: the tomogram is the MRC file in ``../reconstruction/``
(or beside the STAR file) whose stem is the STAR file's, or, followed by ``_``, begins it (the longest
such stem); each fraction becomes a voxel, ``fraction × n`` with ``n`` from the tomogram's header; the
tilt-series name is kept as ``warpTiltSeries``, the fractions as ``warpCoordinateX/Y/Z``, and the score
travels through to the predictions. Without such a tomogram the fractions cannot be placed: a one-line
error says where it was looked for. ``fraction × n``, not ``× (n − 1)``, is the matcher's own rule: a peak
at voxel ``v`` of the binned volume is at ``v ×`` its pixel size in Å (voxel 0's centre at 0 Å) and its
fraction is that over ``n ×`` the pixel size (``MatchFull.cs``, ``MatchLargeVolume.cs``). Warp's
``ts_export_particles --normalized_coords`` multiplies by ``N − 1`` of the unbinned tomogram instead, at
most one unbinned pixel off at the far edge; since the fractions go back unchanged, that is Warp's own
round trip.

Predictions of such picks are written back in Warp's convention (:func:`to_warp`; the predictions'
``coordinates="auto"``): ``rlnMicrographName`` the tilt series and ``rlnCoordinateX/Y/Z`` the fractions as
they came, so that ``WarpTools ts_export_particles --normalized_coords`` exports a predicted class
(it groups particles by ``rlnMicrographName``, the tilt series' ``.tomostar`` name).
Picks Warp *exports* for extraction (``ts_export_particles`` input, pixel coordinates) are ordinary
RELION STAR files and are read as such.

Example:
    >>> import pandas as pd
    >>> is_warp_matching_loop(pd.DataFrame({"rlnCoordinateX": [0.5], "rlnCoordinateY": [0.25], "rlnCoordinateZ": [0.1],
    ...                                     "rlnAutopickFigureOfMerit": [7.2]}))
    True
    >>> is_warp_matching_loop(pd.DataFrame({"rlnCoordinateX": [52.0], "rlnCoordinateY": [40.0], "rlnCoordinateZ": [21.0],
    ...                                     "rlnAutopickFigureOfMerit": [7.2]}))
    False
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cryomonai.errors import CryoDataError
from cryomonai.io.mrc import read_mrc_header

__all__ = ["FIGURE_OF_MERIT", "FRACTIONS", "TILT_SERIES", "find_warp_tomogram", "is_warp_matching_loop", "is_warp_table",
           "read_warp_loop", "to_warp"]

#: WarpTools' template-matching score column
FIGURE_OF_MERIT = "rlnAutopickFigureOfMerit"
_XYZ = ("rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ")
#: where a table read from WarpTools keeps the tilt series' name and the fractions as they came
TILT_SERIES = "warpTiltSeries"
FRACTIONS = ("warpCoordinateX", "warpCoordinateY", "warpCoordinateZ")


def is_warp_matching_loop(loop: pd.DataFrame) -> bool:
    """Whether a STAR loop is WarpTools' template-matching output: its score column and every coordinate a
    fraction in [0, 1] (picks in voxels would all sit in one corner voxel)."""
    if FIGURE_OF_MERIT not in loop or not set(_XYZ) <= set(loop.columns) or len(loop) == 0:
        return False
    xyz = loop[list(_XYZ)].apply(pd.to_numeric, errors="coerce").to_numpy(float)
    return bool(np.isfinite(xyz).all() and (xyz >= 0).all() and (xyz <= 1).all())


def find_warp_tomogram(star: str | Path) -> Path:
    """The tomogram WarpTools matched to write ``star`` (see the module docstring).

    Raises:
        CryoDataError: no MRC file whose stem begins the STAR file's name in ``../reconstruction/`` or beside it.
    """
    star = Path(star)
    folders = [star.parent.parent / "reconstruction", star.parent]
    candidates = [p for folder in folders if folder.is_dir() for p in sorted(folder.glob("*.mrc"))
                  if star.stem == p.stem or star.stem.startswith(p.stem + "_")]
    if not candidates:
        raise CryoDataError(star, "WarpTools picks are fractions of their tomogram's size, and no tomogram "
                                  f"<name>.mrc whose name begins the STAR file's name is in {folders[0]} or {folders[1]}",
                            "keep WarpTools' layout (matching/ beside reconstruction/), or put the tomogram beside the STAR file")
    return max(candidates, key=lambda p: (len(p.stem), p.parent == folders[0])).resolve()


def read_warp_loop(loop: pd.DataFrame, star: str | Path) -> pd.DataFrame:
    """The loop with voxel coordinates and ``rlnMicrographName`` the tomogram's path (absolute); the tilt
    series named in ``warpTiltSeries``.

    Args:
        loop: the particle loop of ``star``, as :mod:`starfile` reads it.
        star: the STAR file (WarpTools' ``matching/<tomogram stem>_<template>.star``).
    """
    tomogram = find_warp_tomogram(star)
    nz, ny, nx = read_mrc_header(tomogram).shape[-3:]
    out = loop.copy()
    for column, fraction, n in zip(_XYZ, FRACTIONS, (nx, ny, nz)):
        out[fraction] = pd.to_numeric(out[column])
        out[column] = out[fraction] * n
    if "rlnMicrographName" in out:
        out[TILT_SERIES] = out["rlnMicrographName"].astype(str)
    out["rlnMicrographName"] = str(tomogram)
    return out.drop(columns=["rlnTomoName"], errors="ignore")


def is_warp_table(df: pd.DataFrame) -> bool:
    """Whether a particle table's rows came from WarpTools' template matching (:func:`read_warp_loop`'s columns)."""
    return {TILT_SERIES, *FRACTIONS} <= set(df.columns)


def to_warp(table: Any) -> Any:
    """A :class:`~cryomonai.io.table.ParticleTable` read from WarpTools' template matching, in Warp's convention:
    the tilt series as its tomogram (``rlnMicrographName``), the fractions as its coordinates; the voxel
    coordinates, the reconstruction's path and the copies are not in it (the predictions' CSV has them)."""
    df = table.df.assign(tomogram=table.df[TILT_SERIES], x=table.df[FRACTIONS[0]], y=table.df[FRACTIONS[1]],
                         z=table.df[FRACTIONS[2]]).drop(columns=[TILT_SERIES, *FRACTIONS])
    return type(table)(df, list(table.class_names), table.source)
