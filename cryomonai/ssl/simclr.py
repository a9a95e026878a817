"""SimCLR (Chen, Kornblith, Norouzi & Hinton 2020, "A simple framework for contrastive learning of
visual representations", ICML) — one of the three methods of Gupta et al. (2022).

Both views go through the same encoder and MLP projection head; NT-Xent (:func:`nt_xent`) pulls the
two views of a sample together against the other ``2N − 2`` embeddings of the (global) batch.
Gupta et al. inherit SimCLR's settings; ``τ = 0.5`` is SimCLR's value for small batches (CIFAR-10,
also ``monai.losses.ContrastiveLoss``'s default), the head is ``F → F → 128`` with BatchNorm.

Example:
    >>> import torch
    >>> from cryomonai.networks import build_encoder
    >>> method = SimCLR(build_encoder("rb3d"))
    >>> views = [torch.randn(4, 1, 16, 16, 16) for _ in range(2)]
    >>> out = method.training_step(views)
    >>> sorted(out)
    ['loss', 'pos_sim']
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cryomonai.ssl.base import SSLMethod
from cryomonai.ssl.losses.nt_xent import nt_xent

__all__ = ["SimCLR"]


class SimCLR(SSLMethod):
    """SimCLR: ``loss = NT-Xent(g(f(x₁)), g(f(x₂)))``.

    Args:
        encoder: backbone ``f`` with ``num_features = F``.
        temperature: ``τ`` (0.5).
        head: the projection head ``g``'s ``proj_dim`` (128), ``hidden_dim`` (``None`` → ``F``) and
            ``head_norm`` (``"batch"``): :meth:`SSLMethod.projection_head`.
    """

    def __init__(self, encoder: nn.Module, temperature: float = 0.5, **head: Any) -> None:
        super().__init__(encoder)
        self.head = self.projection_head(**head)
        self.temperature = temperature

    def training_step(self, views: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Views: 2 × ``(B, C, D, H, W)`` → ``{"loss", "pos_sim"}`` (mean positive-pair cosine)."""
        self._check_views(views)
        b = views[0].shape[0]
        z = self.head(self.encoder(torch.cat(list(views))))  # (2B, P), one pass keeps BN over both views
        z1, z2 = z[:b], z[b:]
        loss = nt_xent(z1, z2, self.temperature)
        pos_sim = F.cosine_similarity(z1.detach(), z2.detach(), dim=1).mean()
        return {"loss": loss, "pos_sim": pos_sim}
