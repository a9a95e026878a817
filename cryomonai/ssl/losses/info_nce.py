"""InfoNCE (Oord, Li & Vinyals 2018, "Representation learning with contrastive predictive coding") as
used by MoCo (He et al. 2020, "Momentum contrast for unsupervised visual representation learning") —
the loss of :class:`~cryomonai.ssl.moco.MoCo`.

Shapes: ``B`` local batch, ``N = W·B`` global batch over ``W`` ranks, ``F`` embedding size, ``K``
queue length.

Example:
    >>> import math
    >>> v = F.normalize(torch.ones(1, 8), dim=1)  # collinear queries, keys and queue: log(K + 1)
    >>> math.isclose(info_nce(v.expand(4, 8), v.expand(4, 8), v.expand(16, 8)).item(), math.log(17), rel_tol=1e-5)
    True
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cryomonai.ssl.functional import concat_all_gather, full_precision, rank_world

__all__ = ["info_nce"]


@full_precision
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
        rank, _ = rank_world()
        logits = q @ concat_all_gather(k).T / temperature  # (B, N)
        labels = torch.arange(q.shape[0], device=q.device) + rank * q.shape[0]
    return F.cross_entropy(logits, labels)
