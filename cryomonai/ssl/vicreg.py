"""VICReg (Bardes, Ponce & LeCun 2022, "VICReg: Variance-invariance-covariance regularization for
self-supervised learning", ICLR) — the non-contrastive fourth method.

``loss = λ·inv + μ·var + ν·cov`` on the expander outputs ``z₁, z₂`` ``(B, E)`` of the two views:

* invariance ``inv = mean((z₁ − z₂)²)``;
* variance ``var = ½ Σ_v mean_e relu(γ − sqrt(Var_b z_v[:, e] + ε))`` (``γ = 1``, ``ε = 1e-4``);
* covariance ``cov = Σ_v Σ_{e≠e'} C(z_v)²_{e,e'} / E`` with ``C`` the batch covariance.

Paper defaults ``λ = μ = 25``, ``ν = 1``; expander ``F → 4F → 4F → 4F`` (8192 for ResNet-50's 2048)
with BatchNorm. Under ``torch.distributed`` the variance and covariance use the gathered batch.

Why VICReg rather than BYOL or SimSiam as the non-contrastive method: it needs no momentum encoder
and no predictor, so there is no asymmetry whose tuning decides between learning and collapse; its
explicit variance term prevents collapse directly rather than through BatchNorm statistics, so it
works with ``rb3d``'s BatchNorm-free trunk and with the small batches (16) that 3D volumes allow;
and it has no negatives, so it does not need a large batch or a queue either.

Example:
    >>> import torch
    >>> from cryomonai.networks import build_encoder
    >>> method = VICReg(build_encoder("rb3d"), expander_dims=(64, 64))
    >>> out = method.training_step([torch.randn(4, 1, 16, 16, 16) for _ in range(2)])
    >>> sorted(out)
    ['cov', 'inv', 'loss', 'var']
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cryomonai.networks.heads import MLPHead
from cryomonai.ssl.base import SSLMethod
from cryomonai.ssl.losses.vicreg import vicreg_terms

__all__ = ["VICReg"]


class VICReg(SSLMethod):
    """VICReg: variance-invariance-covariance regularisation of two views' expanded embeddings.

    Args:
        encoder: backbone with ``num_features = F``.
        expander_dims: widths after ``F`` (``None`` → ``(4F, 4F, 4F)``).
        head_norm: norm in the expander's hidden layers (``"batch"``).
        sim_coeff: ``λ``, invariance weight (25).
        std_coeff: ``μ``, variance weight (25).
        cov_coeff: ``ν``, covariance weight (1).
    """

    def __init__(
        self,
        encoder: nn.Module,
        expander_dims: Sequence[int] | None = None,
        head_norm: str | tuple | None = "batch",
        sim_coeff: float = 25.0,
        std_coeff: float = 25.0,
        cov_coeff: float = 1.0,
    ) -> None:
        super().__init__(encoder)
        f = encoder.num_features
        dims = list(expander_dims) if expander_dims is not None else [4 * f] * 3
        self.head = MLPHead([f, *dims], norm=head_norm)
        self.sim_coeff, self.std_coeff, self.cov_coeff = sim_coeff, std_coeff, cov_coeff

    def training_step(self, views: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Views: 2 × ``(B, C, D, H, W)`` → ``{"loss", "inv", "var", "cov"}``."""
        self._check_views(views)
        b = views[0].shape[0]
        z = self.head(self.encoder(torch.cat(list(views))))  # (2B, E)
        inv, var, cov = vicreg_terms(z[:b], z[b:])
        loss = self.sim_coeff * inv + self.std_coeff * var + self.cov_coeff * cov
        return {"loss": loss, "inv": inv.detach(), "var": var.detach(), "cov": cov.detach()}
