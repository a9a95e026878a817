"""Prediction tables: the columns a classifier adds to a particle table, written as STAR + CSV.

:class:`~cryomonai.engines.predictions.ParticlePredictionsWriter` (the bundle's ``inference``) adds
to the predicted rows of the input table

* ``rlnClassNumber`` (STAR) / ``label`` (CSV) = the **predicted** class;
* :data:`PREDICTED_NUMBER` (1-based) and :data:`PREDICTED_NAME`;
* :data:`MAX_PROBABILITY` (RELION's name for the probability of the assigned class);
* one probability column per class (:func:`prediction_columns`);
* :data:`INPUT_CLASS`: the input's own class, when the input table had labels;

and :func:`write_star_and_csv` writes such a table (or the ``embed`` run's clusters) next to its
outputs, with tomogram paths relative to them; a RELION-5 input (:mod:`cryomonai.io.relion5`) is
written back in its own convention (``rlnTomoName`` and centred Å coordinates, no voxel columns) in
the STAR file, while the CSV also gives the voxel coordinates used.

Example:
    >>> prediction_columns(["1bxn", "3j9i"])
    ['cryoProbability_1bxn', 'cryoProbability_3j9i']
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cryomonai.io.relion5 import CENTRED, write_relion5_star
from cryomonai.io.table import ParticleTable, write_particle_table

__all__ = [
    "INPUT_CLASS",
    "MAX_PROBABILITY",
    "PREDICTED_NAME",
    "PREDICTED_NUMBER",
    "prediction_columns",
    "write_star_and_csv",
]

#: columns a classifier's predictions add (besides ``cryoProbability_<class>``)
PREDICTED_NUMBER = "cryoPredictedClassNumber"
PREDICTED_NAME = "cryoPredictedClassName"
MAX_PROBABILITY = "rlnMaxValueProbDistribution"  # RELION's name for the probability of the assigned class
INPUT_CLASS = "cryoInputClassName"


def prediction_columns(class_names: Sequence[str]) -> list[str]:
    """``cryoProbability_<name>`` per class (non-word characters → ``_``; numbered if names clash)."""
    safe = [re.sub(r"\W", "_", str(n)) for n in class_names]
    if len(set(safe)) < len(safe):
        safe = [f"{k}_{s}" for k, s in enumerate(safe, start=1)]
    return [f"cryoProbability_{s}" for s in safe]


def write_star_and_csv(table: ParticleTable, output_dir: str | os.PathLike, prefix: str) -> dict[str, Path]:
    """Write ``<prefix>.star`` and ``<prefix>.csv`` in ``output_dir``, tomogram paths relative to it.

    ``table.df["tomogram"]`` must hold absolute paths (or None); a table without subtomogram
    files (picks) is written without ``rlnImageName``.
    """
    out = Path(output_dir)
    df = table.df.copy()
    df["tomogram"] = [_relative_to(p, out) for p in df["tomogram"]]
    if df["path"].isna().all():
        df = df.drop(columns="path")  # a picks table: coordinates, no subtomogram files
    table = ParticleTable(df, table.class_names, table.source)
    if set(CENTRED) <= set(df.columns):  # RELION 5 in, RELION 5 out: its tomogram names and centred Å, no voxels
        star = write_relion5_star(table, out / f"{prefix}.star")
    else:
        star = write_particle_table(table, out / f"{prefix}.star")
    return {"star": star, "csv": write_particle_table(table, out / f"{prefix}.csv")}


def _relative_to(path: object, folder: Path) -> object:
    """``path`` relative to ``folder`` (None stays None; another drive stays absolute)."""
    if path is None or (isinstance(path, float) and np.isnan(path)):
        return None
    try:
        return os.path.relpath(str(path), folder.resolve())
    except ValueError:
        return path
