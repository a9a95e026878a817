"""pytom-match-pick particle lists: template-matching candidates as a picks table.

`pytom-match-pick <https://github.com/SBC-Utrecht/pytom-match-pick>`_'s ``pytom_extract_candidates.py``
writes ``<tomo_id>_particles.star`` next to its job file ``<tomo_id>_job.json``: one loop (block
``data_particles``, or a bare ``data_`` in older versions) with, per candidate,

=========================  ==================================================================
``rlnCoordinateX/Y/Z``     voxel of the tomogram (counted from 0), as cryomonai counts them
``rlnAngleRot/Tilt/Psi``   RELION ZYZ Euler angles (degrees)
``rlnLCCmax``              the candidate's score (local correlation maximum)
``rlnCutOff``              the extraction's score threshold
``rlnSearchStd``           the search's standard deviation (``rlnLCCmax / rlnSearchStd`` = SNR)
``rlnDetectorPixelSize``   the tomogram's voxel size (Å)
``rlnMicrographName``      ``tomo_id``: the tomogram's file name **without** its extension
=========================  ==================================================================

:func:`~cryomonai.io.table.read_particle_table` reads it like any picks table (``x, y, z`` from
the coordinates, every other column kept, so the score ``rlnLCCmax`` travels through to the
predictions) through :func:`read_pytom_loop`, which renames the ``ptm`` prefix of early versions'
columns (``ptmCoordinateX`` … ``ptmMicrographName``) to ``rln`` (as pytom's own documentation
advises for RELION) and turns each ``tomo_id`` into its tomogram:
the ``"tomogram"`` of the job file ``<tomo_id>_job.json`` next to the STAR file, else
``<tomo_id>.mrc`` next to it (or one folder up). A name it cannot resolve is kept (the extraction
then reports the missing tomogram; ``--tomogram`` names it). pytom's ``--relion5-compat`` output
(centred Å, ``rlnTomoName``) has no ``tomograms.star`` and is not read here.

Example:
    >>> import pandas as pd
    >>> is_pytom_loop(pd.DataFrame(columns=["rlnCoordinateX", "rlnLCCmax", "rlnCutOff", "rlnSearchStd"]))
    True
    >>> old = pd.DataFrame({"ptmCoordinateX": [3], "ptmLCCmax": [0.4], "ptmCutOff": [0.2], "ptmSearchStd": [0.04]})
    >>> list(read_pytom_loop(old, "tomo_particles.star").columns)
    ['rlnCoordinateX', 'rlnLCCmax', 'rlnCutOff', 'rlnSearchStd']
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

__all__ = ["PYTOM_COLUMNS", "is_pytom_loop", "read_pytom_loop"]

#: the columns that mark a pytom-match-pick particle list (besides RELION's coordinates and angles)
PYTOM_COLUMNS = ("rlnLCCmax", "rlnCutOff", "rlnSearchStd")


def _rln(column: str) -> str:
    """An early pytom column's RELION name (``ptmLCCmax`` → ``rlnLCCmax``); other names unchanged."""
    return "rln" + column[3:] if column.startswith("ptm") else column


def is_pytom_loop(loop: pd.DataFrame) -> bool:
    """Whether a STAR loop is a pytom-match-pick particle list (voxel coordinates + its score columns)."""
    columns = {_rln(str(c)) for c in loop.columns}
    return set(PYTOM_COLUMNS) <= columns and "rlnCoordinateX" in columns


def _tomogram_of(tomo_id: str, star: Path) -> str:
    """The tomogram file of pytom's ``tomo_id`` (see the module docstring); ``tomo_id`` if not found."""
    if (star.parent / tomo_id).is_file():
        return tomo_id  # already a file (e.g. rewritten with --tomogram)
    job = star.parent / f"{tomo_id}_job.json"
    if job.is_file():
        try:
            tomogram = Path(str(json.loads(job.read_text(encoding="utf-8"))["tomogram"])).expanduser()
        except (ValueError, KeyError, TypeError, OSError):
            tomogram = None
        if tomogram is not None:
            for candidate in (tomogram, star.parent / tomogram):
                if candidate.is_file():
                    return str(candidate.resolve())
    for folder in (star.parent, star.parent.parent):
        if (folder / f"{tomo_id}.mrc").is_file():
            return str((folder / f"{tomo_id}.mrc").resolve())
    return tomo_id


def read_pytom_loop(loop: pd.DataFrame, star: str | Path) -> pd.DataFrame:
    """The loop with RELION column names and ``rlnMicrographName`` (``tomo_id``) replaced by the tomogram's path.

    Args:
        loop: the particle loop of ``star``, as :mod:`starfile` reads it.
        star: the STAR file (its folder is where pytom wrote the job file).

    Returns:
        a copy; the resolved paths are absolute, an unresolved name is kept as it was.
    """
    loop = loop.rename(columns=_rln)
    if "rlnMicrographName" not in loop:
        return loop
    star = Path(star)
    names = loop["rlnMicrographName"].astype(str)
    paths = {name: _tomogram_of(name, star) for name in names.unique()}
    return loop.assign(rlnMicrographName=names.map(paths).to_numpy())
