"""A warning when a CPU run's threads would share busy cores (the bundle's ``initialize``).

torch runs each operation on ``torch.get_num_threads()`` OpenMP threads (by default one per core),
and every operation waits for the slowest of them. When other processes keep some of the cores busy,
one of the run's threads is often descheduled and the others wait for it: on a 2-core machine whose
cores two other training processes kept busy, a fine-tuning step of ``rb3d_bn`` at 16³ took 63 ms with
one thread and 173–1,929 ms with two (``docs/records/parallel_cpu/shared_cores.txt``). The grid's own
workers run one thread each; a run started by hand beside other work does not.

:func:`warn_busy_cores` counts the other runnable threads on the machine (``/proc/loadavg``'s
``running`` field, sampled a few times, minus the reading thread) and logs one warning, naming the
fix, when they and the run's threads outnumber the cores. Advice only: the run goes on as asked.
Where ``/proc/loadavg`` does not exist (not Linux), nothing is checked.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

import torch

__all__ = ["busy_cores_message", "runnable_elsewhere", "warn_busy_cores"]

log = logging.getLogger(__name__)

LOADAVG = "/proc/loadavg"


def busy_cores_message(threads: int, cores: int, others: int) -> str | None:
    """The warning for a run of ``threads`` threads on ``cores`` cores with ``others`` runnable threads of
    other work, or None when they fit (``others + threads <= cores``) or the run has one thread."""
    if threads <= 1 or others + threads <= cores:
        return None
    return (f"{others} other thread(s) are running on this machine's {cores} cores and this run uses {threads} torch "
            f"threads: its threads will wait on each other (up to 30x slower per step on a busy 2-core machine). "
            f"Fix: run it with OMP_NUM_THREADS={max(1, cores - others)} (e.g. `OMP_NUM_THREADS=1 cryomonai ...`), "
            f"or when the other work has finished")


def runnable_elsewhere(samples: int = 5, interval: float = 0.05,
                       read: Callable[[], str] | None = None) -> int | None:
    """Runnable threads on the machine besides the reading one: the median of ``samples`` readings of
    ``/proc/loadavg``'s ``running/total`` field; None where the file does not exist."""
    if read is None:
        if not os.path.exists(LOADAVG):
            return None

        def read() -> str:
            with open(LOADAVG, encoding="ascii") as fh:
                return fh.read()

    counts = []
    for k in range(samples):
        if k:
            time.sleep(interval)
        counts.append(int(read().split()[3].split("/")[0]) - 1)
    return sorted(counts)[len(counts) // 2]


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def warn_busy_cores(device: str | torch.device = "cpu") -> bool:
    """Log one warning when a CPU run's torch threads and the machine's other runnable threads outnumber
    its cores (see the module docstring); True if it warned. Nothing on a GPU or with one thread."""
    if torch.device(device).type != "cpu" or torch.get_num_threads() <= 1:
        return False
    others = runnable_elsewhere()
    message = None if others is None else busy_cores_message(torch.get_num_threads(), _cores(), others)
    if message:
        log.warning(message)
    return message is not None
