"""SwAV (Caron, Misra, Mairal, Goyal, Bojanowski & Joulin 2020, "Unsupervised learning of visual
features by contrasting cluster assignments", NeurIPS) — one of the three methods of Gupta et al. (2022).

Embeddings ``z`` (unit rows) are scored against ``K`` learnable prototypes ``c`` (unit rows, re-
normalised every step); Sinkhorn-Knopp (:func:`sinkhorn`) turns one view's scores into equipartitioned
codes ``q``, which the *other* view must predict (:func:`~cryomonai.ssl.losses.swav.swapped_prediction`):
``loss = −½ Σᵢ mean_b Σ_k q_i[b, k] log softmax(z_j c ᵀ/τ)[b, k]``, ``j ≠ i``.

Defaults follow the paper (``ε = 0.05``, 3 Sinkhorn iterations, ``τ = 0.1``, head ``F → F → 128``
with BatchNorm, prototypes frozen at the start, a feature queue that starts late) with sizes for the
few hundred subtomograms of a cryo-ET data set instead of ImageNet: SwAV is known to sit at
``log K`` on small data when ``K`` (3000 in the paper) dwarfs the batch and data set, so
``n_prototypes = 30`` (≈ 3 × the classes), ``freeze_prototypes_steps = 100`` (a few epochs; the paper
freezes for one ImageNet epoch) and a 128-embedding queue (the MoCo queue size of Gupta et al.) that
is filled from ``queue_start_step = 500`` (≈ 15 epochs of 500 subtomograms at batch 16, as the
paper's ``epoch_queue_starts = 15``) and used once full. The queue is per process, as in SwAV.

Example:
    >>> import torch
    >>> from cryomonai.networks import build_encoder
    >>> method = SwAV(build_encoder("rb3d"), n_prototypes=8)
    >>> out = method.training_step([torch.randn(4, 1, 16, 16, 16) for _ in range(2)])
    >>> sorted(out)
    ['loss', 'n_used']
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cryomonai.ssl.base import SSLMethod
from cryomonai.ssl.losses.swav import sinkhorn, swapped_prediction

__all__ = ["SwAV"]


class SwAV(SSLMethod):
    """SwAV with two views, learnable prototypes and an optional late-starting feature queue.

    Args:
        encoder: backbone with ``num_features = F``.
        n_prototypes: ``K`` (30).
        temperature: ``τ`` of the prediction softmax (0.1).
        sinkhorn_eps: ``ε`` (0.05).
        sinkhorn_iters: Sinkhorn iterations (3).
        freeze_prototypes_steps: the prototypes get no gradient while fewer optimizer steps are done.
        queue_length: embeddings kept per view (0: no queue).
        queue_start_step: the queue is filled from this step on and used once full.
        head: the projection head's ``proj_dim`` (embedding size ``P``, 128), ``hidden_dim`` (``None``
            → ``F``) and ``head_norm`` (``"batch"``): :meth:`SSLMethod.projection_head`.
    """

    def __init__(
        self,
        encoder: nn.Module,
        n_prototypes: int = 30,
        temperature: float = 0.1,
        sinkhorn_eps: float = 0.05,
        sinkhorn_iters: int = 3,
        freeze_prototypes_steps: int = 100,
        queue_length: int = 128,
        queue_start_step: int = 500,
        **head: Any,
    ) -> None:
        super().__init__(encoder)
        self.head = self.projection_head(**head)
        proj_dim = self.head.out_features
        self.prototypes = nn.Linear(proj_dim, n_prototypes, bias=False)  # weight: (K, P)
        self.temperature, self.sinkhorn_eps, self.sinkhorn_iters = temperature, sinkhorn_eps, sinkhorn_iters
        self.freeze_prototypes_steps, self.queue_start_step = freeze_prototypes_steps, queue_start_step
        self.register_buffer("queue", torch.zeros(self.n_views, queue_length, proj_dim))  # (V, L, P), newest first
        self.register_buffer("queue_count", torch.zeros((), dtype=torch.long))  # rows filled, ≤ L

    @torch.no_grad()
    def _codes(self, scores: torch.Tensor, view: int, w: torch.Tensor) -> torch.Tensor:
        """Sinkhorn codes ``(B, K)`` for one view's scores ``(B, K)``, the full queue's scores prepended."""
        b, length = scores.shape[0], self.queue.shape[1]
        if length > 0 and int(self.queue_count) >= length:
            scores = torch.cat([self.queue[view] @ w.T, scores])  # (L + B, K)
        return sinkhorn(scores, self.sinkhorn_eps, self.sinkhorn_iters)[-b:]  # this batch's rows

    @torch.no_grad()
    def _enqueue(self, z: torch.Tensor) -> None:
        """Push each view's embeddings ``(V, B, P)`` to the front of its queue (oldest fall off)."""
        length, b = self.queue.shape[1], z.shape[1]
        if length == 0 or int(self.steps_done) < self.queue_start_step:
            return
        keep = max(length - b, 0)
        self.queue[:, b:] = self.queue[:, :keep].clone()
        self.queue[:, : min(b, length)] = z[:, :length].to(self.queue.dtype)
        self.queue_count.copy_(torch.clamp(self.queue_count + b, max=length))

    def training_step(self, views: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Views: 2 × ``(B, C, D, H, W)`` → ``{"loss", "n_used"}`` (prototypes that win a sample)."""
        self._check_views(views)
        with torch.no_grad():
            self.prototypes.weight.copy_(F.normalize(self.prototypes.weight, dim=1))
        b = views[0].shape[0]
        z = F.normalize(self.head(self.encoder(torch.cat(list(views)))), dim=1)  # (V·B, P)
        w = self.prototypes.weight  # (K, P)
        if int(self.steps_done) < self.freeze_prototypes_steps:
            w = w.detach()
        scores = (z @ w.T).view(self.n_views, b, -1)  # (V, B, K)
        codes = torch.stack([self._codes(scores[i].detach(), i, w.detach()) for i in range(self.n_views)])  # (V,B,K)
        loss = swapped_prediction(scores, codes, self.temperature)
        self._enqueue(z.detach().view(self.n_views, b, -1))
        n_used = torch.unique(scores.detach().argmax(dim=2)).numel()
        return {"loss": loss, "n_used": torch.tensor(float(n_used), device=loss.device)}
