"""VICReg's three terms (Bardes, Ponce & LeCun 2022, "VICReg: Variance-invariance-covariance
regularization for self-supervised learning") — weighted into the loss by :class:`~cryomonai.ssl.vicreg.VICReg`.

For the expander outputs ``z₁, z₂`` ``(B, E)`` of two views:

* invariance ``inv = mean((z₁ − z₂)²)``;
* variance ``var = ½ Σ_v mean_e relu(γ − sqrt(Var_b z_v[:, e] + ε))``;
* covariance ``cov = Σ_v Σ_{e≠e'} C(z_v)²_{e,e'} / E`` with ``C`` the batch covariance.

Example:
    >>> z = torch.zeros(4, 2)  # collapse: no invariance or covariance loss, variance γ − √ε per view
    >>> [round(t.item(), 3) for t in vicreg_terms(z, z)]
    [0.0, 0.99, 0.0]
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cryomonai.ssl.functional import concat_all_gather, full_precision

__all__ = ["vicreg_terms"]


@full_precision
def vicreg_terms(z1: torch.Tensor, z2: torch.Tensor, gamma: float = 1.0, eps: float = 1e-4) -> tuple[torch.Tensor, ...]:
    """The three VICReg terms ``(inv, var, cov)`` for embeddings ``(B, E)`` of two views (B ≥ 2 globally).

    Under ``torch.distributed`` the variance and covariance use the gathered batch ``(N, E)``.
    """
    inv = F.mse_loss(z1, z2)
    var = z1.new_zeros(())
    cov = z1.new_zeros(())
    for z in (concat_all_gather(z1), concat_all_gather(z2)):  # (N, E)
        z = z - z.mean(dim=0)
        var = var + F.relu(gamma - torch.sqrt(z.var(dim=0) + eps)).mean() / 2
        c = z.T @ z / (z.shape[0] - 1)  # (E, E)
        off_diag = c - torch.diag(torch.diagonal(c))
        cov = cov + off_diag.pow(2).sum() / z.shape[1]
    return inv, var, cov
