"""NT-Xent (Chen, Kornblith, Norouzi & Hinton 2020, "A simple framework for contrastive learning of
visual representations") — the loss of :class:`~cryomonai.ssl.simclr.SimCLR`.

Shapes: ``B`` local batch, ``N = W·B`` global batch over ``W`` ranks, ``F`` embedding size.

Example:
    >>> import math
    >>> z = torch.ones(4, 8)  # collinear embeddings: log(2N − 1)
    >>> math.isclose(nt_xent(z, z).item(), math.log(7), rel_tol=1e-5)
    True
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cryomonai.ssl.functional import concat_all_gather, full_precision, rank_world

__all__ = ["nt_xent"]


@full_precision
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
    rank, _ = rank_world()
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
