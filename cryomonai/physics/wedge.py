"""The missing wedge: the Fourier samples a single-axis tilt series measures (tilt axis y, beam z).

Example:
    >>> w = missing_wedge_mask((8, 8, 8), tilt_range=(-60.0, 60.0))
    >>> bool(w[0, 0, 0]), bool(w[3, 0, 0])   # DC kept; pure kz (along the beam) missing
    (True, False)
"""

from __future__ import annotations

import torch

from cryomonai.physics.fourier import fourier_grid

__all__ = ["missing_wedge_mask"]


def missing_wedge_mask(
    shape, tilt_range: tuple[float, float] = (-60.0, 60.0), device=None
) -> torch.Tensor:
    """Boolean mask of the Fourier samples measured by a single-axis tilt series (tilt axis y, beam z).

    A projection at tilt θ measures the central plane whose normal is the beam direction rotated
    about y, i.e. the plane containing ``(kz, kx) = (sin θ, cos θ)`` and the ky axis. Sample
    ``(kz, ky, kx)`` is measured when its angle ``atan2(kz, kx)`` (folded to (−90°, 90°]) lies in
    ``tilt_range``. The DC is always kept; for ``(-90, 90)`` nothing is missing.
    """
    kz, ky, kx = fourier_grid(shape, device)
    kz, kx = torch.broadcast_tensors(kz, kx)
    ang = torch.rad2deg(torch.atan2(kz, kx))  # (-180, 180]
    ang = torch.where(ang > 90, ang - 180, torch.where(ang <= -90, ang + 180, ang))
    lo, hi = tilt_range
    m = (ang >= lo - 1e-9) & (ang <= hi + 1e-9)
    m = m | ((kz == 0) & (kx == 0))
    return m.expand(*shape).contiguous()
