"""Shared pieces of the self-supervised methods: gathering across ranks, MoCo's batch shuffle, EMA.

The losses are in :mod:`cryomonai.ssl.losses`, one per file. Everything works in one process; when
``torch.distributed`` is initialised the batch-level pieces (:func:`concat_all_gather`,
:func:`batch_shuffle`) see the global batch. Gathering is *local-shard*: the gathered tensor
carries gradient only through this rank's own rows (the other ranks' rows are constants), as in
MoCo v3 and most SimCLR ports.

Shapes: ``B`` local batch, ``W`` world size, ``N = W·B`` global batch.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["batch_shuffle", "batch_unshuffle", "concat_all_gather", "ema_update", "full_precision", "is_distributed",
           "rank_world"]

_F = TypeVar("_F", bound=Callable)


def full_precision(loss: _F) -> _F:
    """``loss`` run in float32 even inside ``torch.autocast`` (the bundle's ``amp``).

    Floating-point tensor arguments are cast to float32 and autocast is switched off on their
    device while ``loss`` runs, so logits divided by a small temperature, softmaxes and covariance
    terms keep float32 precision (bf16 has 8 bits of mantissa: a cosine logit of 1/0.2 = 5 would
    be off by up to 0.02). The encoder and heads before it still run in bf16. Gradients flow
    through the casts.
    """

    @functools.wraps(loss)
    def wrapper(*args, **kwargs):
        tensors = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)]
        device = tensors[0].device.type if tensors else "cpu"

        def cast(a):
            return a.float() if isinstance(a, torch.Tensor) and a.is_floating_point() else a

        with torch.autocast(device, enabled=False):
            return loss(*map(cast, args), **{k: cast(v) for k, v in kwargs.items()})

    return wrapper  # type: ignore[return-value]


def is_distributed() -> bool:
    """``True`` when ``torch.distributed`` is available and a process group is initialised."""
    return dist.is_available() and dist.is_initialized()


def rank_world() -> tuple[int, int]:
    """``(rank, world size)``; ``(0, 1)`` in one process."""
    return (dist.get_rank(), dist.get_world_size()) if is_distributed() else (0, 1)


def concat_all_gather(x: torch.Tensor) -> torch.Tensor:
    """All ranks' ``x`` concatenated in rank order: ``(B, ...) → (W·B, ...)``; identity in one process.

    Every rank must pass the same shape. The result is differentiable with respect to this rank's
    own rows only (local-shard gradient).
    """
    if not is_distributed():
        return x
    rank, world = rank_world()
    parts = [torch.empty_like(x) for _ in range(world)]
    dist.all_gather(parts, x.detach().contiguous())
    parts[rank] = x
    return torch.cat(parts, dim=0)


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, m: float) -> None:
    """Momentum update ``θ_target ← m·θ_target + (1 − m)·θ_online`` of every parameter (He et al. 2020).

    Buffers (BatchNorm statistics) are not averaged: the target keeps its own, as in MoCo.
    """
    for p_t, p_o in zip(target.parameters(), online.parameters()):
        p_t.copy_(p_t * m + p_o.detach() * (1.0 - m))  # the formula as written, as in MoCo's builder.py


@torch.no_grad()
def batch_shuffle(x: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Shuffle the global batch across ranks (MoCo's shuffling BN): ``(B, ...) → ((B, ...), (N,))``.

    Rank 0 draws a permutation of the ``N`` gathered samples and broadcasts it; each rank keeps its
    slice. Returns the local shuffled batch and the inverse permutation for :func:`batch_unshuffle`.
    In one process the permutation is within the batch (BatchNorm statistics are unchanged by it, so
    there it only costs time).
    """
    rank, world = rank_world()
    x_all = concat_all_gather(x)  # (N, ...)
    perm = torch.randperm(x_all.shape[0], generator=generator).to(x.device)
    if is_distributed():
        dist.broadcast(perm, src=0)
    b = x.shape[0]
    return x_all[perm[rank * b : (rank + 1) * b]], torch.argsort(perm)


def batch_unshuffle(x: torch.Tensor, idx_unshuffle: torch.Tensor) -> torch.Tensor:
    """Undo :func:`batch_shuffle`: ``(B, ...) → (B, ...)`` in the original order of this rank."""
    rank, _ = rank_world()
    b = x.shape[0]
    x_all = concat_all_gather(x.detach())
    return x_all[idx_unshuffle[rank * b : (rank + 1) * b]]
