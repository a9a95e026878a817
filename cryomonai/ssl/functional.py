"""Shared pieces of the self-supervised methods: contrastive losses, Sinkhorn codes, gathering, EMA.

Everything works in one process; when ``torch.distributed`` is initialised the batch-level pieces
(:func:`concat_all_gather`, :func:`nt_xent`, :func:`sinkhorn`, :func:`batch_shuffle`) see the
global batch. Gathering is *local-shard*: the gathered tensor carries gradient only through this
rank's own rows (the other ranks' rows are constants), as in MoCo v3 and most SimCLR ports.

Shapes: ``B`` local batch, ``W`` world size, ``N = W·B`` global batch, ``F`` embedding size,
``K`` queue length or number of prototypes.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

__all__ = [
    "batch_shuffle",
    "batch_unshuffle",
    "concat_all_gather",
    "ema_update",
    "info_nce",
    "is_distributed",
    "nt_xent",
    "sinkhorn",
]


def is_distributed() -> bool:
    """``True`` when ``torch.distributed`` is available and a process group is initialised."""
    return dist.is_available() and dist.is_initialized()


def _rank_world() -> tuple[int, int]:
    return (dist.get_rank(), dist.get_world_size()) if is_distributed() else (0, 1)


def concat_all_gather(x: torch.Tensor) -> torch.Tensor:
    """All ranks' ``x`` concatenated in rank order: ``(B, ...) → (W·B, ...)``; identity in one process.

    Every rank must pass the same shape. The result is differentiable with respect to this rank's
    own rows only (local-shard gradient).
    """
    if not is_distributed():
        return x
    rank, world = _rank_world()
    parts = [torch.empty_like(x) for _ in range(world)]
    dist.all_gather(parts, x.detach().contiguous())
    parts[rank] = x
    return torch.cat(parts, dim=0)


def info_nce(
    q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor | None = None, temperature: float = 0.2
) -> torch.Tensor:
    """InfoNCE (Oord et al. 2018) as used by MoCo (He et al. 2020), mean over the batch.

    ``-log exp(q·k⁺/τ) / Σ exp(q·kᵢ/τ)``, with ``q``, ``k``, ``queue`` L2-normalised by the caller.

    * With a ``queue`` (MoCo): logits ``[q·k, q·queueᵀ]`` of shape ``(B, 1 + K)``, positive in column 0.
      Collinear ``q``, ``k`` and queue give ``log(K + 1)``.
    * Without (in-batch negatives): logits ``q·k_allᵀ`` of shape ``(B, N)``, positives on the
      diagonal of this rank's block; ``k`` is gathered across ranks. Collinear inputs give ``log N``.

    Args:
        q: queries ``(B, F)``.
        k: positive keys ``(B, F)``, row ``i`` matches ``q[i]``.
        queue: negative keys ``(K, F)`` or ``None``.
        temperature: ``τ``.
    """
    if queue is not None:
        l_pos = (q * k).sum(dim=1, keepdim=True)  # positive logits: (B, 1)
        l_neg = q @ queue.T  # negative logits: (B, K)
        logits = torch.cat([l_pos, l_neg], dim=1) / temperature  # (B, 1 + K)
        labels = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
    else:
        rank, _ = _rank_world()
        logits = q @ concat_all_gather(k).T / temperature  # (B, N)
        labels = torch.arange(q.shape[0], device=q.device) + rank * q.shape[0]
    return F.cross_entropy(logits, labels)


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """NT-Xent, the normalised-temperature cross entropy of SimCLR (Chen et al. 2020), 2N-way.

    Each of the ``2B`` local embeddings is an anchor; its positive is the other view of the same
    sample, its negatives the remaining ``2N − 2`` embeddings of both views (gathered across ranks).
    Inputs are L2-normalised here (cosine similarity). Equals ``monai.losses.ContrastiveLoss`` in one
    process; collinear embeddings give ``log(2N − 1)``.

    Args:
        z1, z2: the two views' embeddings ``(B, F)``; row ``i`` of each comes from sample ``i``.
        temperature: ``τ``.
    """
    rank, _ = _rank_world()
    b = z1.shape[0]
    z1, z2 = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    z1_all, z2_all = concat_all_gather(z1), concat_all_gather(z2)  # (N, F) each
    n = z1_all.shape[0]
    anchors = torch.cat([z1, z2])  # (2B, F)
    logits = anchors @ torch.cat([z1_all, z2_all]).T / temperature  # (2B, 2N)
    idx = torch.arange(b, device=z1.device) + rank * b  # this rank's rows in the gathered views
    self_idx = torch.cat([idx, idx + n])  # (2B,) anchor's own column
    pos_idx = torch.cat([idx + n, idx])  # (2B,) the other view's column
    logits = logits.masked_fill(F.one_hot(self_idx, 2 * n).bool(), float("-inf"))
    return F.cross_entropy(logits, pos_idx)


@torch.no_grad()
def sinkhorn(scores: torch.Tensor, eps: float = 0.05, n_iters: int = 3) -> torch.Tensor:
    """Sinkhorn-Knopp equipartition codes of SwAV (Caron et al. 2020): ``(B, K) → (B, K)``.

    ``Q = exp(scores / ε)`` is alternately rescaled so that every prototype gets ``1/K`` of the mass
    and every sample ``1/N`` (sums all-reduced across ranks, ``N`` the global batch); the result is
    multiplied by ``N``, so each sample's code sums to exactly 1 and each prototype's column sums to
    ``N/K`` at convergence (the last rescaling is the per-sample one). Computed in float32.

    Args:
        scores: prototype scores ``z·cᵀ`` of the local batch ``(B, K)`` (cosines, in [-1, 1]).
        eps: entropic regularisation ``ε`` (0.05).
        n_iters: Sinkhorn iterations (3).
    """
    scores = scores.float()
    top = scores.max()
    if is_distributed():
        dist.all_reduce(top, op=dist.ReduceOp.MAX)
    q = torch.exp((scores - top) / eps).T  # (K, B); the shift cancels in the normalisation
    n_global = q.shape[1] * _rank_world()[1]
    n_protos = q.shape[0]
    total = q.sum()
    if is_distributed():
        dist.all_reduce(total)
    q = q / total
    for _ in range(n_iters):
        rows = q.sum(dim=1, keepdim=True)  # (K, 1) mass per prototype, over the global batch
        if is_distributed():
            dist.all_reduce(rows)
        q = q / rows / n_protos
        q = q / q.sum(dim=0, keepdim=True) / n_global  # (1, B) mass per sample
    return (q * n_global).T  # (B, K), rows sum to 1


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
    rank, world = _rank_world()
    x_all = concat_all_gather(x)  # (N, ...)
    perm = torch.randperm(x_all.shape[0], generator=generator).to(x.device)
    if is_distributed():
        dist.broadcast(perm, src=0)
    b = x.shape[0]
    return x_all[perm[rank * b : (rank + 1) * b]], torch.argsort(perm)


def batch_unshuffle(x: torch.Tensor, idx_unshuffle: torch.Tensor) -> torch.Tensor:
    """Undo :func:`batch_shuffle`: ``(B, ...) → (B, ...)`` in the original order of this rank."""
    rank, _ = _rank_world()
    b = x.shape[0]
    x_all = concat_all_gather(x.detach())
    return x_all[idx_unshuffle[rank * b : (rank + 1) * b]]
