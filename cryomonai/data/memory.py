"""Host memory: what is available, and a one-line refusal before a run that would not fit.

Available memory is the kernel's estimate of what can be allocated without swapping
(``MemAvailable`` in ``/proc/meminfo``; ``os.sysconf`` where there is no ``/proc``), and no more than
what this process's cgroup still allows (``memory.max`` − ``memory.current``, cgroup v2): a SLURM
job's memory limit, not the node's free memory.

Example:
    >>> check_memory("tomo.mrc", {"sampling map": 2**20}, "use a coarser level", available=2**30)
    >>> check_memory("tomo.mrc", {"sampling map": 2**31}, "use a coarser level", available=2**30)
    Traceback (most recent call last):
    ...
    cryomonai.errors.CryoDataError: tomo.mrc: needs about 2.0 GiB of host memory (sampling map 2.0 GiB), 1.0 GiB available — fix: use a coarser level
"""

from __future__ import annotations

import os
from pathlib import Path

from cryomonai.errors import CryoDataError

__all__ = ["available_memory", "check_memory"]

_GIB = 2.0**30


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (OSError, ValueError, AttributeError):
        return None


def _cgroup_available() -> int | None:
    """What this process's cgroup (v2) still allows, or None without a limit."""
    try:
        rel = next(line.split(":", 2)[2] for line in Path("/proc/self/cgroup").read_text().splitlines()
                   if line.startswith("0::"))
        folder = Path("/sys/fs/cgroup") / rel.strip().lstrip("/")
        limit = (folder / "memory.max").read_text().strip()
        if limit == "max":
            return None
        return int(limit) - int((folder / "memory.current").read_text().strip())
    except (OSError, ValueError, StopIteration):
        return None


def available_memory() -> int | None:
    """Bytes of host memory this process can still allocate (see the module docstring); None if unknown."""
    known = [n for n in (_meminfo_available(), _cgroup_available()) if n is not None]
    return min(known) if known else None


def check_memory(where: str, parts: dict[str, int], fix: str, available: int | None = None) -> None:
    """Refuse a run whose estimated host memory, the sum of ``parts`` (name → bytes), exceeds
    ``available`` (default: :func:`available_memory`; unknown: no check).

    Raises:
        CryoDataError: one line naming ``where``, the estimate and its parts, what is available, ``fix``.
    """
    available = available_memory() if available is None else available
    need = sum(parts.values())
    if available is None or need <= available:
        return
    detail = ", ".join(f"{name} {n / _GIB:.1f} GiB" for name, n in parts.items() if n)
    raise CryoDataError(where, f"needs about {need / _GIB:.1f} GiB of host memory ({detail}), "
                               f"{available / _GIB:.1f} GiB available", fix)
