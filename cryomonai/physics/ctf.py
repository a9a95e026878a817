"""The contrast transfer function (CTF) of a transmission electron microscope, rotationally symmetric.

AITom's ``ctf.create`` model (Pei et al. 2016), with defocus in µm (negative = underfocus) and the
spatial frequency in 1/nm; :func:`ctf_3d` samples it on a volume's Fourier grid (fftn layout).

Example:
    >>> round(electron_wavelength_nm(300.0), 6)
    0.001969
"""

from __future__ import annotations

import math

import torch

from cryomonai.physics.fourier import frequency_radius

__all__ = ["electron_wavelength_nm", "ctf_3d", "ctf_of_frequency"]


def electron_wavelength_nm(voltage_kv: float) -> float:
    """Relativistic electron wavelength in nm (0.001969 nm at 300 kV)."""
    v = voltage_kv * 1e3
    return 1.226426 / math.sqrt(v * (1 + 0.97845e-6 * v))


def ctf_3d(
    shape,
    pixel_size_nm: float = 1.0,
    defocus_um: float = -5.0,
    voltage_kv: float = 300.0,
    cs_mm: float = 2.0,
    envelope_sigma: float = 0.4,
    amplitude_contrast: float = 0.0,
    device=None,
) -> torch.Tensor:
    """Rotationally symmetric 3D contrast transfer function (AITom's ``ctf.create`` model).

    ``CTF(k) = −[√(1−A²)·sin χ(k) + A·cos χ(k)] · exp(−(k / (σ·k_Ny))²)`` with
    ``χ(k) = π·λ·Δf·k² − (π/2)·Cs·λ³·k⁴``, ``Δf = −defocus`` (underfocus positive inside χ),
    ``k`` in 1/nm and ``k_Ny = 1/(2·pixel)``. At the defaults the first zero is at ≈ 3.1 nm.
    """
    k = frequency_radius(shape, device) / pixel_size_nm  # (D,H,W) in 1/nm
    return ctf_of_frequency(k, pixel_size_nm, defocus_um, voltage_kv, cs_mm, envelope_sigma, amplitude_contrast).float()


def ctf_of_frequency(
    k: torch.Tensor,
    pixel_size_nm: float = 1.0,
    defocus_um=-5.0,
    voltage_kv: float = 300.0,
    cs_mm: float = 2.0,
    envelope_sigma: float = 0.4,
    amplitude_contrast: float = 0.0,
) -> torch.Tensor:
    """:func:`ctf_3d`'s formula at spatial frequencies ``k`` in 1/nm (any shape, any dtype).

    ``defocus_um`` may be a tensor that broadcasts against ``k`` (one defocus per sample of a batch).
    """
    lam = electron_wavelength_nm(voltage_kv)
    dz = -defocus_um * 1e3  # nm, underfocus > 0
    cs = cs_mm * 1e6  # nm
    chi = math.pi * lam * dz * k**2 - 0.5 * math.pi * cs * lam**3 * k**4
    a = amplitude_contrast
    ctf = -(math.sqrt(1 - a * a) * torch.sin(chi) + a * torch.cos(chi))
    if envelope_sigma and envelope_sigma > 0:
        k_ny = 0.5 / pixel_size_nm
        ctf = ctf * torch.exp(-((k / (envelope_sigma * k_ny)) ** 2))
    return ctf
