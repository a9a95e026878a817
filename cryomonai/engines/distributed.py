"""Multi-process teardown in the right order.

A ``DistributedDataParallel`` module owns a C++ ``Reducer`` (and a ``Logger`` that shares it) whose
communication threads use the process group. If the group is destroyed first and the reducer freed
later — at interpreter exit, when the bundle's parsed config finally lets go of the network — a gloo
worker thread can wait for the GIL that the exiting main thread holds, and the process hangs (seen
about one run in three in a 2-process test before this). :func:`release_ddp` frees them while the
group is still alive; the bundle's ``multi_gpu_*.json`` call it in ``finalize`` between the barrier
and ``destroy_process_group``. ``tests/test_ddp_exits.py`` runs ``torchrun`` pretraining and
fine-tuning again and again and requires exit 0 within a time limit every time.
"""

from __future__ import annotations

import gc
from typing import Any

from torch.nn.parallel import DistributedDataParallel

__all__ = ["release_ddp"]


def release_ddp(*networks: Any) -> None:
    """Free the reducer and logger of each ``DistributedDataParallel`` in ``networks`` (others are skipped).

    Call it after the last backward pass and before ``torch.distributed.destroy_process_group()``;
    the modules inside (``ddp.module``) and their weights stay usable.
    """
    for network in networks:
        if isinstance(network, DistributedDataParallel):
            for name in ("logger", "reducer"):
                if name in network.__dict__:
                    delattr(network, name)
    gc.collect()
