"""The dataset a bundle run trains on: simulated on first use, then cached for the datasets.

:func:`ensure_dataset` returns the particle table of a run; when it is missing the built-in
simulator (:func:`~cryomonai.simulate.dataset.simulate_dataset`) writes it first (the bundle's
default data), then the float16 volume cache of :class:`~cryomonai.data.VolumeStackDataset` is
built. Under ``torch.distributed`` rank 0 does this while the other ranks wait.

A table that exists is used as it is. When the simulation asked for differs from the one its
``simulation.json`` records (e.g. the crowding defaults changed since it was simulated: a dataset
recorded without ``neighbour_gap`` is the touching shell), a ``UserWarning`` names the differences
(:func:`stale_simulation`), so an old dataset is never reused silently.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import warnings
from pathlib import Path
from typing import Any

import torch.distributed as dist

from cryomonai.data.dataset import build_volume_cache
from cryomonai.errors import ConfigError, CryoDataError, as_flag
from cryomonai.simulate.dataset import simulate_dataset
from cryomonai.simulate.subtomogram import TOUCHING_SHELL, gap_range, neighbour_range
from cryomonai.simulate.templates import SHREC_10

__all__ = ["ensure_dataset", "stale_simulation"]

#: the simulate_dataset arguments that define the data (compared by :func:`stale_simulation`)
DATA_KEYS = ("n_per_class", "snr", "box", "binning", "classes", "seed", "max_shift", "n_neighbours",
             "neighbour_gap", "neighbour_contact", "context")
#: what a simulation.json written before a key existed meant by its absence
LEGACY = {"neighbour_gap": TOUCHING_SHELL["neighbour_gap"], "neighbour_contact": "target", "context": False,
          "binning": 1}


def _canonical(key: str, value: Any) -> Any:
    """A simulation value in one comparable form (``"inf"`` → inf, a count/gap range as a tuple)."""
    if key == "snr":
        return math.inf if str(value) == "inf" else float(value)
    if key == "classes":
        return tuple(value or SHREC_10)
    if key == "n_neighbours":
        return neighbour_range(value)
    if key == "neighbour_gap":
        return gap_range(value)
    return float(value) if key == "max_shift" else value


def stale_simulation(folder: str | os.PathLike, simulate_kwargs: dict) -> dict[str, tuple[Any, Any]]:
    """``{key: (recorded, asked)}`` where ``folder/simulation.json`` differs from ``simulate_kwargs``
    (over :func:`simulate_dataset`'s defaults) in a key of :data:`DATA_KEYS`; ``{}`` without a record.

    Example:
        >>> import tempfile, pathlib, json
        >>> d = pathlib.Path(tempfile.mkdtemp()); _ = (d / "simulation.json").write_text(json.dumps(
        ...     {"n_per_class": 5, "snr": "inf", "box": 16, "classes": ["3qm1"], "seed": 0, "max_shift": 8.0,
        ...      "n_neighbours": 4}))
        >>> sorted(stale_simulation(d, {"n_per_class": 5, "snr": math.inf, "box": 16, "classes": ["3qm1"]}))
        ['n_neighbours', 'neighbour_contact', 'neighbour_gap']
    """
    record = Path(folder) / "simulation.json"
    if not record.is_file():
        return {}
    meta = json.loads(record.read_text())
    defaults = {k: v.default for k, v in inspect.signature(simulate_dataset).parameters.items()}
    out = {}
    for key in DATA_KEYS:
        recorded, asked = meta.get(key, LEGACY.get(key)), simulate_kwargs.get(key, defaults[key])
        if recorded is not None and _canonical(key, recorded) != _canonical(key, asked):
            out[key] = (recorded, asked)
    return out


def _prepare_dataset(
    table: Path, cache_path: str | os.PathLike | None, simulate: bool, progress: bool, sim_kw: dict,
    working: dict | None = None,
) -> None:
    """Simulate the dataset if ``table`` is missing (and allowed), then build the volume cache."""
    if not table.is_file():
        if not simulate:
            raise CryoDataError(table, "particle table not found",
                                "give --dataset_dir of a folder with particles.star, or --simulate true")
        if table.name != "particles.star":
            raise ConfigError(table, "is missing, and the simulator writes only particles.star",
                              "point at an existing table, or at <folder>/particles.star to simulate one")
        if table.parent.exists():
            found = sorted(p.name for p in table.parent.glob("*") if p.suffix in (".star", ".csv"))
            raise CryoDataError(table, f"not found, and its folder exists (tables there: {found or 'none'})",
                                "point --dataset_table at your table, or give a new --dataset_dir to simulate into")
        simulate_dataset(table.parent, progress=progress, **sim_kw)
    elif simulate and (stale := stale_simulation(table.parent, sim_kw)):
        warnings.warn(f"{table} exists and is used as it is, but it was simulated with "
                      + ", ".join(f"{k}={old!r} (asked: {new!r})" for k, (old, new) in stale.items())
                      + f"; to simulate anew, remove {table.parent} or choose another dataset folder",
                      UserWarning, stacklevel=3)
    if cache_path is not None:
        build_volume_cache(table, cache_path, progress=progress, **(working or {}))


def ensure_dataset(
    table: str | os.PathLike,
    cache_path: str | os.PathLike | None = None,
    simulate: bool = True,
    progress: bool = True,
    working_box: int | None = None,
    working_voxel_size: float | None = None,
    **simulate_kwargs: Any,
) -> Path:
    """The particle table ``table``, simulated first if it does not exist.

    Args:
        table: a particle table (STAR or CSV). If missing and ``simulate``, it must be named
            ``particles.star`` in a folder that does not exist yet:
            :func:`simulate_dataset` writes that folder.
        cache_path: also build (or check) the float16 volume cache of
            :class:`~cryomonai.data.VolumeStackDataset` there, once, before the datasets open it.
        simulate: simulate a missing table (else raise); ``"true"``/``"false"`` from a command line count as
            booleans.
        progress: show progress bars (the same).
        working_box, working_voxel_size: the cache's volume size (voxels, Å): volumes of another
            size are Fourier-resized and cropped/padded into the cache once (the bundle's
            ``working_box`` / ``working_voxel_size``; None: as they are).
        simulate_kwargs: arguments of ``simulate_dataset`` (``n_per_class``, ``snr``, ``box``,
            ``classes``, ``seed``, ``workers`` …), used only when simulating.

    Returns:
        ``table`` as a :class:`~pathlib.Path`.

    Raises:
        CryoDataError: the table is missing and ``simulate`` is false (or its folder exists), or a
            volume is unreadable (cache build).
        ConfigError: ``simulate`` is asked for a table that is not ``particles.star``, a working
            box / voxel size is not positive, or ``simulate`` / ``progress`` is not a yes/no value.
    """
    table = Path(table)
    simulate, progress = as_flag(simulate, "key 'simulate'"), as_flag(progress, "key 'progress'")  # "false" from a command line
    distributed = dist.is_available() and dist.is_initialized()
    if not distributed or dist.get_rank() == 0:
        working = {"working_box": working_box, "working_voxel_size": working_voxel_size}
        _prepare_dataset(table, cache_path, simulate, progress, simulate_kwargs, working)
    if distributed:
        dist.barrier()
    return table
