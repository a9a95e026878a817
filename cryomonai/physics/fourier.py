"""The Fourier grid of a volume and the filters built on it: ``|k|``, smooth low-pass and band-pass.

Filters are real tensors in ``torch.fft.fftn`` layout (DC at index 0); frequencies are in
cycles/voxel (Nyquist = 0.5). Volumes are ``(z, y, x)``.

Example:
    >>> h = bandpass_filter((8, 8, 8), low=0.0, high=0.5)
    >>> float(h[0, 0, 0]), float(h[0, 0, 4]) < 1e-6   # DC passes; |k| = Nyquist is beyond the cut-off
    (1.0, True)
"""

from __future__ import annotations

import math

import torch

__all__ = ["fourier_grid", "frequency_radius", "apply_fourier_filter", "raised_cosine_lowpass", "bandpass_filter"]


def fourier_grid(
    shape: tuple[int, int, int], device=None, half: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Frequencies ``(kz, ky, kx)`` in cycles/voxel, each broadcastable to ``shape``, fftn layout.

    With ``half`` the x axis is ``torch.fft.rfftn``'s (``W // 2 + 1`` non-negative frequencies):
    filters built on it multiply an ``rfftn`` spectrum directly.
    """
    ks = [torch.fft.fftfreq(n, device=device, dtype=torch.float64) for n in shape[:2]]
    kx = (torch.fft.rfftfreq if half else torch.fft.fftfreq)(shape[2], device=device, dtype=torch.float64)
    return ks[0][:, None, None], ks[1][None, :, None], kx[None, None, :]


def frequency_radius(shape, device=None, half: bool = False) -> torch.Tensor:
    """``|k|`` in cycles/voxel on :func:`fourier_grid` (float64, ``shape``; ``half``: ``rfftn``'s grid)."""
    kz, ky, kx = fourier_grid(shape, device, half)
    return torch.sqrt(kz**2 + ky**2 + kx**2)


def apply_fourier_filter(vol: torch.Tensor, filt: torch.Tensor) -> torch.Tensor:
    """``F⁻¹[F(vol) · filt]`` over the last three dims (real in, real out; batches broadcast)."""
    f = torch.fft.fftn(vol, dim=(-3, -2, -1))
    return torch.fft.ifftn(f * filt, dim=(-3, -2, -1)).real.to(vol.dtype)


def raised_cosine_lowpass(r: torch.Tensor, high, width: float = 0.05) -> torch.Tensor:
    """``cos²`` edge from 1 at ``r = high`` to 0 at ``high + width`` (``r``, ``high`` in the same units).

    ``high`` may be a tensor that broadcasts against ``r`` (one cut-off per sample of a batch).
    """
    t = ((r - high) / width).clamp(0, 1)
    return torch.cos(t * math.pi / 2) ** 2


def bandpass_filter(shape, low: float = 0.0, high: float = 1.0, width: float = 0.05, device=None) -> torch.Tensor:
    """Smooth band-pass: 1 for ``low < |k|/k_Ny < high``, raised-cosine edges ``width`` wide.

    ``low``/``high`` are fractions of Nyquist (0.5 cycles/voxel); ``high=1`` removes the corners of
    the Fourier cube beyond the Nyquist sphere; ``low=0`` keeps the DC.
    """
    r = frequency_radius(shape, device) / 0.5
    out = torch.ones_like(r)
    if high < math.sqrt(3):
        out = out * raised_cosine_lowpass(r, high, width)
    if low > 0:
        t = ((low - r) / width).clamp(0, 1)
        out = out * torch.cos(t * math.pi / 2) ** 2
    return out.float()
