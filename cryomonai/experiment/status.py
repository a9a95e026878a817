"""``cryomonai grid --status``: where a grid stands, without running anything.

For a grid folder and the preset it is run with: whether a driver holds it now (its folder lock,
:mod:`cryomonai.io.lock`), the cells evaluated, the runs left by kind (counted as a resumed grid counts
them, :func:`~cryomonai.experiment.progress.count_runs`) and the running time left at the pace in its
``progress.json`` (:func:`~cryomonai.experiment.progress.forecast`), and when the last run finished (that
file's time: for a driver on another machine, whether it still makes progress). It reads the folder and writes
nothing, so it can be asked from a login node while the grid runs on the cluster; a preset that
differs from the grid's own is the same one-line error a resumed grid would give.

Example (a grid folder not started yet):
    >>> import tempfile
    >>> from cryomonai.experiment.grid import GridRunner
    >>> from cryomonai.experiment.preset import load_preset
    >>> grid_status(GridRunner(load_preset("cpu"), tempfile.mkdtemp())).splitlines()[0].endswith("not started")
    True
"""

from __future__ import annotations

import datetime
import os
import socket
import time
from typing import Any

from cryomonai.experiment.preset import grid_cells
from cryomonai.experiment.progress import count_runs, forecast, read_pace, runs_by_kind
from cryomonai.experiment.resume import check_resume
from cryomonai.experiment.tables import cell_key
from cryomonai.io.lock import read_holder

__all__ = ["driver_state", "grid_status"]

_NAMES = {"pretrain": "pretrainings", "selection": "recipe-selection fine-tunings",
          "finetune": "cell fine-tunings", "evaluate": "cell evaluations"}


def driver_state(folder: str | os.PathLike) -> str:
    """Who holds the grid folder's lock, in words: ``running (pid … on … since …)``, ``stopped …`` (its
    process is gone: killed, or its machine lost), ``not running`` (released), or, for a holder on another
    machine, what its lock file says (this machine cannot see that process)."""
    holder = read_holder(folder)
    if not holder:
        return "not running"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("started", 0)))
    who = f"pid {holder.get('pid', '?')} on {holder.get('host', '?')} since {since}"
    if holder.get("host") != socket.gethostname():
        return f"held by {who} (another machine: this one cannot tell whether it still runs)"
    try:
        os.kill(int(holder["pid"]), 0)
    except ProcessLookupError:
        return f"stopped ({who}; its process is gone: rerun the same command to resume)"
    except (PermissionError, KeyError, ValueError, TypeError):
        pass  # a process of another user, or a record without a pid: the lock file says it holds the folder
    return f"running ({who})"


def grid_status(runner: Any) -> str:
    """Where the grid of ``runner`` (a :class:`~cryomonai.experiment.grid.GridRunner`) stands, a few lines.

    Raises:
        ConfigError: the grid ran with a preset that differs from ``runner``'s in a key its runs depend on.
    """
    preset, layout = runner.preset, runner.layout
    head = f"grid {preset.name} in {layout.root}"
    if not layout.preset.is_file():
        return f"{head}: not started"
    check_resume(layout.preset, preset)
    cells = list(grid_cells(preset))
    done = runner.tables.done()
    todo = [c for c in cells if cell_key(c) not in done]
    counts = count_runs(runner, todo)
    lines = [f"{head}: {driver_state(layout.root)}",
             f"  cells evaluated: {len(cells) - len(todo)} of {len(cells)}",
             "  runs left: " + ", ".join(f"{n} {_NAMES[k]}" for k, n in counts.items()) + f" ({sum(counts.values())} in all)"]
    try:
        work, elapsed = read_pace(layout.progress)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        work, elapsed = {}, 0.0
    eta = forecast(work, runs_by_kind(counts), elapsed)
    if layout.progress.is_file():  # rewritten after every finished run: a driver elsewhere is alive if this is recent
        finished = layout.progress.stat().st_mtime
        ago = datetime.timedelta(seconds=round(max(time.time() - finished, 0)))
        lines.append(f"  last run finished: {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(finished))} ({ago} ago)")
    if eta is None:
        lines.append("  time left: not known before its first run finishes")
    else:
        so_far = datetime.timedelta(seconds=round(elapsed))
        lines.append(f"  time left: {datetime.timedelta(seconds=round(eta))} of running time at its pace so far "
                     f"({so_far} of working time)")
    return "\n".join(lines)
