"""SwAV's loss (Caron, Misra, Mairal, Goyal, Bojanowski & Joulin 2020, "Unsupervised learning of
visual features by contrasting cluster assignments") — of :class:`~cryomonai.ssl.swav.SwAV`.

* :func:`sinkhorn` — equipartitioned codes ``q`` from one view's prototype scores;
* :func:`swapped_prediction` — every view predicts the codes of every other view:
  ``loss = −1/(V(V−1)) Σ_{i≠j} mean_b Σ_k q_i[b, k] log softmax(s_j/τ)[b, k]``.

Shapes: ``V`` views, ``B`` local batch, ``N`` global batch, ``K`` prototypes.

Example:
    >>> import math
    >>> scores = torch.zeros(2, 4, 3)  # (V, B, K): uniform scores and codes give log K
    >>> codes = torch.stack([sinkhorn(s) for s in scores])
    >>> round(swapped_prediction(scores, codes).item(), 4) == round(math.log(3), 4)
    True
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

from cryomonai.ssl.functional import full_precision, is_distributed, rank_world

__all__ = ["sinkhorn", "swapped_prediction"]


@torch.no_grad()
@full_precision
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
    n_global = q.shape[1] * rank_world()[1]
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


@full_precision
def swapped_prediction(scores: torch.Tensor, codes: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """SwAV's swapped prediction: the cross entropy of each view's codes under every other view's softmax.

    Args:
        scores: prototype scores ``z·cᵀ`` of every view ``(V, B, K)`` (with gradient).
        codes: the views' Sinkhorn codes ``(V, B, K)`` (no gradient), row sums 1.
        temperature: ``τ`` of the prediction softmax.
    """
    n_views = scores.shape[0]
    log_p = F.log_softmax(scores / temperature, dim=2)  # (V, B, K)
    loss = scores.new_zeros(())
    for i in range(n_views):
        for j in range(n_views):
            if j != i:
                loss = loss - (codes[i] * log_p[j]).sum(dim=1).mean()
    return loss / (n_views * (n_views - 1))
