"""File I/O: MRC volumes, tomograms (MRC or OME-Zarr, read lazily), particle tables (STAR/CSV), prediction tables, atomic writes, folder locks.

Importing it does not import MONAI: ``cryomonai.io.MrcReader`` (a MONAI ``ImageReader``) is built
on first use (:mod:`cryomonai.io.mrc`), when a config names it::

    {"_target_": "LoadImaged", "keys": ["image"], "reader": "cryomonai.io.MrcReader"}
"""

from __future__ import annotations

from typing import Any

from cryomonai.io import mrc
from cryomonai.io.atomic import atomic_path, atomic_write
from cryomonai.io.lock import FolderLock
from cryomonai.io.mrc import MrcInfo, check_volume, read_mrc, read_mrc_header, write_mrc
from cryomonai.io.omezarr import is_ome_zarr, read_ome_zarr_levels
from cryomonai.io.predictions import prediction_columns, write_star_and_csv
from cryomonai.io.relion5 import is_relion5_particles, read_relion5_picks
from cryomonai.io.table import ParticleTable, read_particle_table, write_particle_table
from cryomonai.io.tomogram import TomogramLevel, choose_level, open_tomogram, tomogram_levels

__all__ = [
    "FolderLock",
    "MrcInfo",
    "MrcReader",
    "ParticleTable",
    "TomogramLevel",
    "atomic_path",
    "atomic_write",
    "check_volume",
    "choose_level",
    "is_ome_zarr",
    "open_tomogram",
    "is_relion5_particles",
    "prediction_columns",
    "read_mrc",
    "read_mrc_header",
    "read_ome_zarr_levels",
    "read_particle_table",
    "read_relion5_picks",
    "tomogram_levels",
    "write_mrc",
    "write_particle_table",
    "write_star_and_csv",
]


def __getattr__(name: str) -> Any:
    """``MrcReader`` on first access (PEP 562), from :mod:`cryomonai.io.mrc`."""
    if name == "MrcReader":
        return mrc.MrcReader
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
