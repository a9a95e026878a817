"""File I/O: MRC volumes, particle tables (STAR/CSV) and atomic writes.

Names are imported on first use (PEP 562), so ``import cryomonai.io`` is instant and
``cryomonai.io.MrcReader`` (which needs MONAI) costs nothing until a config names it::

    {"_target_": "LoadImaged", "keys": ["image"], "reader": "cryomonai.io.MrcReader"}
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # for type checkers and IDEs only
    from cryomonai.io.atomic import atomic_path, atomic_write
    from cryomonai.io.mrc import MrcInfo, MrcReader, check_volume, read_mrc, read_mrc_header, write_mrc
    from cryomonai.io.table import ParticleTable, read_particle_table, write_particle_table

_SOURCES = {
    "atomic_path": "atomic",
    "atomic_write": "atomic",
    "MrcInfo": "mrc",
    "MrcReader": "mrc",
    "check_volume": "mrc",
    "read_mrc": "mrc",
    "read_mrc_header": "mrc",
    "write_mrc": "mrc",
    "ParticleTable": "table",
    "read_particle_table": "table",
    "write_particle_table": "table",
}

__all__ = sorted(_SOURCES)


def __getattr__(name: str) -> Any:
    """Import the submodule that defines ``name`` on first access."""
    if name not in _SOURCES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_SOURCES[name]}"), name)


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
