"""Prediction tables: the columns a classifier adds to a particle table, written as STAR + CSV.

:class:`~cryomonai.engines.predictions.ParticlePredictionsWriter` (the bundle's ``inference``) adds
to the predicted rows of the input table

* ``rlnClassNumber`` (STAR) / ``label`` (CSV) = the **predicted** class;
* :data:`PREDICTED_NUMBER` (1-based) and :data:`PREDICTED_NAME`;
* :data:`MAX_PROBABILITY` (RELION's name for the probability of the assigned class);
* one probability column per class (:func:`prediction_columns`);
* :data:`INPUT_CLASS`: the input's own class, when the input table had labels;

and :func:`write_star_and_csv` writes such a table (or the ``embed`` run's clusters) next to its
outputs, with tomogram paths relative to them, atomically as one set. The STAR file's coordinates
follow ``coordinates`` (:data:`COORDINATES`):

* ``"auto"`` (default): a RELION-5 input (:mod:`cryomonai.io.relion5`) is written back in its own
  convention (``rlnTomoName`` and centred Å coordinates, no voxel columns), WarpTools template
  matching in its own (the tilt series and the fractions of the tomogram, :func:`~cryomonai.io.warp.to_warp`),
  any other input in cryomonai's (``rlnMicrographName`` + ``rlnCoordinateX/Y/Z`` in voxels, as read);
* ``"relion5"``: always ``rlnTomoName`` + centred Å (:data:`~cryomonai.io.relion5.CENTRED`); a
  table in voxels is converted with its MRC tomograms' headers, and a ``tomograms.star``
  describing them is written next to it (:func:`to_relion5`), so RELION 5 and
  :func:`~cryomonai.io.relion5.read_relion5_picks` read it back;
* ``"relion3"``: ``rlnMicrographName`` (the tomogram file, relative to the STAR file) +
  ``rlnCoordinateX/Y/Z`` in voxels of that tomogram, ``rlnOriginX/Y/ZAngst`` 0 (kept if the
  input had them), no centred columns and no ``rlnTomoName`` — what RELION 3/4 subtomogram jobs,
  Warp/M and ArtiaX read (:func:`to_relion3`).

The CSV always holds every column (voxel coordinates, and centred ones where the input had them or
``relion5`` computed them). With
``split_by_class`` one more STAR file per class, ``<prefix>_<class>.star`` (:func:`class_files`),
in the same convention, holds the particles predicted as that class (an empty loop for none);
without it, such files an earlier run left are removed, so none contradicts the new predictions.
:func:`filter_predictions` keeps the rows whose :data:`MAX_PROBABILITY` reaches a threshold.

Example:
    >>> prediction_columns(["1bxn", "3j9i"])
    ['cryoProbability_1bxn', 'cryoProbability_3j9i']
    >>> [p.name for p in class_files("predictions", ["1bxn", "TRiC/CCT"]).values()]
    ['predictions_1bxn.star', 'predictions_TRiC_CCT.star']
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import starfile

from cryomonai.errors import ConfigError, CryoDataError
from cryomonai.io.atomic import atomic_write_texts
from cryomonai.io.mrc import read_mrc_header
from cryomonai.io.relion5 import CENTRED, format_relion5_star
from cryomonai.io.table import ParticleTable, format_particle_table
from cryomonai.io.warp import is_warp_table, to_warp

__all__ = [
    "COORDINATES",
    "INPUT_CLASS",
    "MAX_PROBABILITY",
    "PREDICTED_NAME",
    "PREDICTED_NUMBER",
    "check_coordinates",
    "check_min_probability",
    "class_files",
    "confident_rows",
    "filter_predictions",
    "prediction_columns",
    "to_relion3",
    "to_relion5",
    "write_star_and_csv",
]

#: columns a classifier's predictions add (besides ``cryoProbability_<class>``)
PREDICTED_NUMBER = "cryoPredictedClassNumber"
PREDICTED_NAME = "cryoPredictedClassName"
MAX_PROBABILITY = "rlnMaxValueProbDistribution"  # RELION's name for the probability of the assigned class
INPUT_CLASS = "cryoInputClassName"
#: the coordinate conventions of a predictions STAR file (see the module docstring)
COORDINATES = ("auto", "relion5", "relion3")
#: RELION's particle shifts in Å (x, y, z), 0 in a ``relion3`` file unless the input had them
ORIGINS = ("rlnOriginXAngst", "rlnOriginYAngst", "rlnOriginZAngst")


def prediction_columns(class_names: Sequence[str]) -> list[str]:
    """``cryoProbability_<name>`` per class (non-word characters → ``_``; numbered if names clash)."""
    safe = [re.sub(r"\W", "_", str(n)) for n in class_names]
    if len(set(safe)) < len(safe):
        safe = [f"{k}_{s}" for k, s in enumerate(safe, start=1)]
    return [f"cryoProbability_{s}" for s in safe]



def class_files(prefix: str, class_names: Sequence[str]) -> dict[str, Path]:
    """The per-class STAR file of each class: ``<prefix>_<class>.star`` (non-word characters → ``_``)."""
    stems = [column.removeprefix("cryoProbability_") for column in prediction_columns(class_names)]
    return {str(name): Path(f"{prefix}_{stem}.star") for name, stem in zip(class_names, stems)}


def check_min_probability(value: float) -> float:
    """``value`` as a float in [0, 1] (:class:`~cryomonai.errors.ConfigError` otherwise).

    >>> check_min_probability(0.5)
    0.5
    """
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not 0.0 <= number <= 1.0:  # also NaN
        raise ConfigError("min_probability", f"{value!r} is not a probability between 0 and 1",
                          "give 0 (keep every prediction) up to 1 (keep only certain ones), e.g. 0.8")
    return number


def check_coordinates(value: str) -> str:
    """``value`` if it is one of :data:`COORDINATES` (:class:`~cryomonai.errors.ConfigError` otherwise)."""
    if value not in COORDINATES:
        raise ConfigError("coordinates", f"unknown convention {value!r}", f"use one of {list(COORDINATES)}")
    return value


def confident_rows(table: ParticleTable, min_probability: float) -> np.ndarray:
    """(N,) bool: the rows whose :data:`MAX_PROBABILITY` is at least ``min_probability`` (all rows for 0)."""
    threshold = check_min_probability(min_probability)
    if threshold == 0.0:
        return np.ones(len(table), bool)
    if MAX_PROBABILITY not in table.df:
        raise CryoDataError(table.source or "predictions", f"has no {MAX_PROBABILITY} column",
                            "filter a predictions table (the inference output), or set min_probability to 0")
    return (pd.to_numeric(table.df[MAX_PROBABILITY], errors="coerce") >= threshold).to_numpy()


def filter_predictions(table: ParticleTable, min_probability: float = 0.0) -> ParticleTable:
    """The predictions whose :data:`MAX_PROBABILITY` is at least ``min_probability`` (0: all of them).

    Raises:
        ConfigError: ``min_probability`` outside [0, 1].
        CryoDataError: a table without probabilities.

    Example:
        >>> table = ParticleTable(pd.DataFrame({MAX_PROBABILITY: [0.9, 0.4, 0.7]}), ["a"])
        >>> filter_predictions(table, 0.7).df[MAX_PROBABILITY].tolist()
        [0.9, 0.7]
    """
    return table.subset(confident_rows(table, min_probability))


def to_relion3(table: ParticleTable) -> ParticleTable:
    """The table for a RELION-3/4 (Warp, ArtiaX) STAR file: voxels, no centred Å, no ``rlnTomoName``.

    ``tomogram`` and ``x, y, z`` (written as ``rlnMicrographName`` and ``rlnCoordinateX/Y/Z``) are
    kept as they are; :data:`ORIGINS` are added as 0 where the table has coordinates but no shifts.
    """
    df = table.df.drop(columns=[c for c in (*CENTRED, "rlnTomoName") if c in table.df])
    if len(df) and df[["tomogram", "x", "y", "z"]].notna().all(axis=None):
        df = df.assign(**{c: 0.0 for c in ORIGINS if c not in df})
    return ParticleTable(df, list(table.class_names), table.source)


def to_relion5(table: ParticleTable, output_dir: str | os.PathLike) -> tuple[ParticleTable, pd.DataFrame | None]:
    """The table with RELION-5 ``rlnTomoName`` + centred Å, and the ``tomograms.star`` rows describing its tomograms.

    A table that already has the centred columns (read from RELION 5) is returned as is, with None.
    Otherwise every row needs an MRC tomogram (absolute path) and ``x, y, z`` in its voxels; with
    ``n`` its size and ``v`` its voxel size (header), ``X_Å = (x − n_x / 2) · v``, the inverse of
    :func:`~cryomonai.io.relion5.centred_to_voxels`. The tomograms are named by their file stems and
    described at binning 1 (``rlnTomoTiltSeriesPixelSize`` = ``v``), their paths relative to ``output_dir``.

    Raises:
        CryoDataError: a row without coordinates, an unreadable tomogram, two tomograms of one stem.
    """
    df = table.df
    if set(CENTRED) <= set(df.columns):
        return table, None
    where = str(table.source or "predictions")
    if len(df) and df[["tomogram", "x", "y", "z"]].isna().any(axis=None):
        raise CryoDataError(where, "RELION-5 coordinates need a tomogram and x, y, z on every row",
                            "classify picks (tomogram + coordinates), or write coordinates='auto'")
    centred, names, tomograms = {c: np.zeros(len(df)) for c in CENTRED}, pd.Series("", index=df.index), []
    for tomogram in dict.fromkeys(df["tomogram"]):
        info = read_mrc_header(tomogram)
        if len(info.shape) != 3:
            raise CryoDataError(tomogram, f"is not a volume (shape {info.shape})", "give the reconstructed tomogram")
        name, (nz, ny, nx), voxel = Path(tomogram).stem, info.shape, float(info.voxel_size[2])
        if any(t["rlnTomoName"] == name for t in tomograms):
            raise CryoDataError(tomogram, f"another tomogram is also named {name!r}",
                                "give the tomograms different file names, or write coordinates='relion3'")
        rows = (df["tomogram"] == tomogram).to_numpy()
        for column, axis, n in zip(CENTRED, "xyz", (nx, ny, nz)):
            centred[column][rows] = (df.loc[rows, axis].to_numpy(float) - n / 2) * voxel
        names[rows] = name
        tomograms.append({"rlnTomoName": name, "rlnTomoTiltSeriesPixelSize": voxel, "rlnTomoTomogramBinning": 1.0,
                          "rlnTomoSizeX": nx, "rlnTomoSizeY": ny, "rlnTomoSizeZ": nz,
                          "rlnTomoReconstructedTomogram": _relative_to(tomogram, Path(output_dir))})
    out = df.drop(columns=[c for c in ("rlnTomoName",) if c in df]).assign(rlnTomoName=names.to_numpy(), **centred)
    return ParticleTable(out, list(table.class_names), None), pd.DataFrame(tomograms)


def write_star_and_csv(table: ParticleTable, output_dir: str | os.PathLike, prefix: str, coordinates: str = "auto",
                       split_by_class: bool = False) -> dict[str, Path]:
    """Write ``<prefix>.star`` and ``<prefix>.csv`` in ``output_dir``, tomogram paths relative to it.

    ``table.df["tomogram"]`` must hold absolute paths (or None); a table without subtomogram
    files (picks) is written without ``rlnImageName``. ``coordinates`` (:data:`COORDINATES`) and
    ``split_by_class`` are explained in the module docstring. Every file is written before any
    replaces its predecessor (:func:`~cryomonai.io.atomic.atomic_write_texts`).

    Returns:
        the files by kind: ``star``, ``csv``, ``tomograms`` (a converted ``relion5``), ``star:<class>``.
    """
    check_coordinates(coordinates)
    out = Path(output_dir)
    full, tomograms = to_relion5(table, out) if coordinates == "relion5" else (table, None)
    full = _relative_tomograms(full, out)  # every column: the CSV
    star_table = to_relion3(full) if coordinates == "relion3" else full
    if coordinates == "auto" and is_warp_table(full.df):
        star_table = to_warp(full)  # back to WarpTools' template-matching convention
    relion5 = set(CENTRED) <= set(star_table.df.columns)
    written = {"star": out / f"{prefix}.star", "csv": out / f"{prefix}.csv"}
    texts = {written["star"]: _star_text(star_table, written["star"], relion5),
             written["csv"]: format_particle_table(full, written["csv"])}
    if tomograms is not None:
        written["tomograms"] = out / "tomograms.star"
        texts[written["tomograms"]] = starfile.to_string({"global": tomograms})
    if split_by_class:
        for name, file in class_files(prefix, star_table.class_names).items():
            written[f"star:{name}"] = out / file
            subset = star_table.subset((star_table.df["label"] == name).to_numpy())
            texts[out / file] = _star_text(subset, out / file, relion5)
    atomic_write_texts(texts)
    if not split_by_class:  # an earlier run's per-class files would contradict the new predictions
        for file in class_files(prefix, star_table.class_names).values():
            (out / file).unlink(missing_ok=True)
    return written


def _relative_tomograms(table: ParticleTable, out: Path) -> ParticleTable:
    """The table with tomogram paths relative to ``out`` and, for picks, no ``path`` column."""
    df = table.df.copy()
    df["tomogram"] = [_relative_to(p, out) for p in df["tomogram"]]
    if "path" in df and df["path"].isna().all():
        df = df.drop(columns="path")  # a picks table: coordinates, no subtomogram files
    return ParticleTable(df, table.class_names, table.source)


def _star_text(table: ParticleTable, path: Path, relion5: bool) -> str:
    """The STAR text: RELION 5's convention (centred Å) if ``relion5``, else the particle table's (voxels)."""
    return format_relion5_star(table) if relion5 else format_particle_table(table, path)


def _relative_to(path: object, folder: Path) -> object:
    """``path`` relative to ``folder`` (None stays None; another drive stays absolute)."""
    if path is None or (isinstance(path, float) and np.isnan(path)):
        return None
    try:
        return os.path.relpath(str(path), folder.resolve())
    except ValueError:
        return path
