"""The cryo-ET imaging model in Fourier space: band-pass, 3D CTF, missing wedge and noise at an SNR.

The filters themselves (Fourier grid, band-pass, CTF, missing wedge) are :mod:`cryomonai.physics`'s,
with its conventions: volumes ``(z, y, x)``, beam along **z**, tilt axis **y**, filters in
``torch.fft.fftn`` layout, frequencies in cycles/voxel (Nyquist = 0.5). This module adds the
noise models, :class:`ImagingParams` and the imaging of a density map.

The imaging model of :func:`image_volume` follows the simulator behind the paper's data (AITom,
Pei et al. 2016 / Liu et al. 2020), with ``H = band-pass · CTF`` and ``W`` the missing-wedge mask,
and one of three noise models (:attr:`ImagingParams.noise_model`):

* ``"split"`` (default): ``observed = W · F⁻¹[ H · F(v + n₁) ] + W · n₂``, the noise split in two
  halves like AITom's, ``n₁`` before the CTF and ``n₂`` after it, white Gaussian noise scaled so
  that each contributes half of the final noise variance;
* ``"filtered"``: ``observed = W · F⁻¹[ H · F(v + n) ]``, all the noise white before the filters,
  so it has the signal's spectral envelope (nothing in the wedge, zero at the CTF zeros).

For these two the noise is scaled so that **SNR = var(signal) / var(noise)** in the returned box.

* ``"aitom"``: AITom's own convention, so that a requested SNR is AITom's nominal SNR: the noise
  and filters of ``do_reconstruction`` in AITom's ``aitom/simulation/reconstruction/
  reconstruction__simple_convolution.py``, applied to the whole volume handed to
  :func:`image_volume` and then cropped, as AITom's few-molecule simulator images its whole
  packing map and then trims the subtomogram. Both halves get the same white variance
  ``σ² = ½ · var(F⁻¹[H·W·F(v)]) / (mean(|H·W|²) · SNR)`` (:func:`aitom_noise_variance`): the
  variance of the CTF- and wedge-filtered map (no band-pass) over the whole volume, divided by the
  white-noise gain of that filter (AITom's ``calc_variance`` and ``calc_corrfac``; AITom estimates
  the gain from one random draw, we use its exact value). ``n₁`` is added before the CTF, ``n₂``
  after it through a wide Gaussian low-pass ``L`` (AITom's "MTF"), and AITom's band-pass ``B``
  (half Nyquist at 1 nm/voxel; :func:`aitom_filters`) acts on the map before the noise and on the
  sum after it: ``observed = W · B · (F⁻¹[H · F(B · v + n₁)] + L · n₂)``. The half after the CTF
  skips the CTF's small gain, so over the whole volume var(signal) / var(noise) is ≈ 0.46 × the
  nominal SNR for 32³ (0.56 × for 64³); a box cropped around the particles holds more than its
  share of the map's signal, so its ratio is higher (≈ 3 × nominal in
  :class:`~cryomonai.simulate.subtomogram.SubtomogramSimulator`'s 32³ boxes of a 64³ map with the
  touching shell of 4 neighbours, less with the default farther and fewer neighbours; AITom's
  packing map, sized by its ``get_box_size``, is larger and emptier, so higher still there).
  AITom's ``missing_wedge_angle`` 30° is ``tilt_range=(-60, 60)``. Differences from AITom, all
  negligible for the noise level: the Nyquist sphere is our band-pass ``(0, 1)`` (AITom's is
  centred half a voxel off the DC), the signal is band-passed twice even without noise (AITom
  skips the second pass then), and the CTF is ours (AITom's has the opposite overall sign and adds
  its Cs term, < 0.1 % of the phase at these frequencies, with the other sign).

Example:
    >>> observed, signal = image_volume(torch.ones(8, 8, 8), snr=math.inf)
    >>> tuple(observed.shape), tuple(signal.shape)
    ((1, 8, 8, 8), (8, 8, 8))
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch

from cryomonai.errors import ConfigError
from cryomonai.physics.ctf import ctf_3d
from cryomonai.physics.fourier import bandpass_filter, frequency_radius
from cryomonai.physics.wedge import missing_wedge_mask

__all__ = [
    "ImagingParams",
    "imaged_signal",
    "imaged_noise",
    "image_volume",
    "signal_and_noise",
    "measured_snr",
    "aitom_filters",
    "aitom_noise_variance",
    "NOISE_MODELS",
]

#: the noise models of :attr:`ImagingParams.noise_model` (see the module docstring)
NOISE_MODELS: tuple[str, ...] = ("split", "filtered", "aitom")


@dataclass(frozen=True)
class ImagingParams:
    """Parameters of the imaging model (defaults: the paper's simulated data, AITom's defaults).

    Attributes:
        pixel_size_nm: voxel size in nm (1 nm = 10 Å).
        defocus_um: defocus in µm, negative = underfocus (AITom's sign; −5 µm default).
        voltage_kv: acceleration voltage in kV.
        cs_mm: spherical aberration in mm.
        envelope_sigma: Gaussian CTF envelope width as a fraction of Nyquist (AITom's ``sigma``).
        amplitude_contrast: fraction of amplitude contrast (0 = pure phase contrast, as AITom).
        tilt_range: (min, max) tilt angles in degrees about y; ``None`` disables the wedge.
        bandpass: (low, high) pass band in fractions of Nyquist (smooth edges).
        apply_ctf: ``False`` skips the CTF (band-pass and wedge only).
        noise_model: ``"split"`` (half the noise before the CTF, half after it), ``"filtered"``
            (all of it before band-pass · CTF · wedge) or ``"aitom"`` (AITom's convention: the SNR
            is AITom's nominal one, and AITom's band-pass and low-pass apply); see the module
            docstring.
    """

    pixel_size_nm: float = 1.0
    defocus_um: float = -5.0
    voltage_kv: float = 300.0
    cs_mm: float = 2.0
    envelope_sigma: float = 0.4
    amplitude_contrast: float = 0.0
    tilt_range: tuple[float, float] | None = (-60.0, 60.0)
    bandpass: tuple[float, float] = (0.0, 1.0)
    apply_ctf: bool = True
    noise_model: str = "split"

    def __post_init__(self) -> None:
        if self.noise_model not in NOISE_MODELS:
            raise ConfigError("ImagingParams", f"unknown noise_model {self.noise_model!r}",
                              f"use one of {list(NOISE_MODELS)}")


@functools.lru_cache(maxsize=16)
def _filters(shape: tuple[int, ...], p: ImagingParams, device=None) -> tuple[torch.Tensor, torch.Tensor, float, float]:
    """(H, W, mean(|HW|²), mean(|W|²)): band-pass·CTF, the wedge mask and the white-noise gains
    (the variance of unit white noise after a real filter G is mean(|G|²), Parseval) for ``shape``;
    cached, since a dataset uses one box and one set of filters."""
    h = bandpass_filter(shape, *p.bandpass, device=device)
    if p.apply_ctf:
        h = h * ctf_3d(
            shape, p.pixel_size_nm, p.defocus_um, p.voltage_kv, p.cs_mm, p.envelope_sigma, p.amplitude_contrast, device
        )
    w = (
        missing_wedge_mask(shape, p.tilt_range, device).float()
        if p.tilt_range is not None
        else torch.ones(shape, device=device)
    )
    return h, w, (h * w).double().pow(2).mean().item(), w.double().pow(2).mean().item()


def _soft_sphere(d: torch.Tensor, radius: float, sigma: float) -> torch.Tensor:
    """AITom's smooth sphere mask of the distance ``d``: 1 within ``radius``, ``exp(−((d − radius) /
    sigma)²)`` beyond it, set to 0 where that falls below e⁻³."""
    v = torch.exp(-(((d - radius).clamp(min=0)) / sigma) ** 2)
    return torch.where(v < math.exp(-3), torch.zeros_like(v), v)


def aitom_filters(
    shape: tuple[int, int, int], pixel_size_nm: float = 1.0, device=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """AITom's band-pass ``B`` and "MTF" low-pass ``L`` for a volume of ``shape`` (fftn layout, float64).

    Both are the smooth Fourier-space spheres of AITom's ``tom_bandpass`` in
    ``do_reconstruction_given_sigma``, in voxels of the Fourier grid: ``d = n·|k|`` from the DC, ``n =
    shape[0]`` (AITom's volumes are cubes; here the filters stay isotropic in frequency otherwise).

    * ``B``: radius ``floor(n · pixel_size_nm / 4)`` (AITom's ``BPThresh``, half Nyquist at 1 nm/voxel),
      Gaussian edge σ = 2 voxels; applied to the map before the noise and to the sum after it.
    * ``L``: radius 1 voxel, Gaussian edge σ = 0.2·n voxels (0.2 cycles/voxel); applied to the noise
      added after the CTF.

    Example:
        >>> b, l = aitom_filters((32, 32, 32))
        >>> float(b[0, 0, 8]), float(b[0, 0, 16]), round(float(l[0, 0, 8]), 2)  # |k| = 0.25, 0.5, 0.25
        (1.0, 0.0, 0.3)
    """
    n = shape[0]
    d = frequency_radius(shape, device) * n
    return _soft_sphere(d, math.floor(n * pixel_size_nm / 4), 2.0), _soft_sphere(d, 1.0, 0.2 * n)


@functools.lru_cache(maxsize=16)
def _aitom_terms(
    shape: tuple[int, ...], p: ImagingParams, device=None
) -> tuple[torch.Tensor, torch.Tensor, float, float, float]:
    """noise_model="aitom": the filters of the noise added before the CTF (``B·H·W``) and after it
    (``B·L·P·W``, P the band-pass) on ``rfftn``'s half grid, and the white-noise gains
    ``mean(|H·W|²)`` (of the filter that defines the signal variance), ``g₁``, ``g₂`` of the two;
    cached like :func:`_filters`."""
    h, w, g_ref, _ = _filters(shape, p, device)
    b, l = aitom_filters(shape, p.pixel_size_nm, device)
    band = bandpass_filter(shape, *p.bandpass, device=device).double()
    f1, f2 = b * h.double() * w, b * l * band * w
    return _hermitian_half(f1), _hermitian_half(f2), g_ref, f1.pow(2).mean().item(), f2.pow(2).mean().item()


@functools.lru_cache(maxsize=16)
def _signal_filter(shape: tuple[int, int, int], p: ImagingParams, device=None, reference: bool = False) -> torch.Tensor:
    """The signal's transfer on ``rfftn``'s half grid, made Hermitian, ``(G(k) + G(−k)) / 2``: then
    ``irfftn(rfftn(v) · G)`` equals ``Re F⁻¹[F(v) · G]`` for a real ``v``, at half the cost.

    ``G = H·W``, times ``B²`` with noise_model="aitom" (AITom band-passes the map before adding the
    noise and again after); ``reference`` keeps ``H·W`` (AITom's filter for the signal variance)."""
    h, w, _, _ = _filters(shape, p, device)
    g = (h * w).double()
    if p.noise_model == "aitom" and not reference:
        g = g * aitom_filters(shape, p.pixel_size_nm, device)[0] ** 2
    return _hermitian_half(g)


def _hermitian_half(g: torch.Tensor) -> torch.Tensor:
    """``(G(k) + G(−k)) / 2`` of a real (D, H, W) filter on ``rfftn``'s half grid."""
    g_neg = torch.roll(torch.flip(g, (0, 1, 2)), (1, 1, 1), (0, 1, 2))  # G(−k): index i → −i mod n
    return (0.5 * (g + g_neg))[..., : g.shape[2] // 2 + 1].contiguous()


def _filter_real(density: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """``irfftn(rfftn(density) · g)`` over the last three dims, float64."""
    dims = (-3, -2, -1)
    return torch.fft.irfftn(torch.fft.rfftn(density.double(), dim=dims) * g, s=tuple(density.shape[-3:]), dim=dims)


def imaged_signal(density: torch.Tensor, params: ImagingParams = ImagingParams()) -> torch.Tensor:
    """The noise-free imaged density ``W · F⁻¹[H · F(density)]`` (with noise_model="aitom" also
    AITom's band-pass, twice: ``W · B² · F⁻¹[H · F(density)]``).

    Args:
        density: (..., D, H, W) real densities (a batch is imaged volume by volume).

    Returns:
        float64, the input's shape.
    """
    return _filter_real(density, _signal_filter(tuple(density.shape[-3:]), params, density.device))


def imaged_noise(
    shape: tuple[int, int, int],
    noise_var: float,
    params: ImagingParams = ImagingParams(),
    generator: torch.Generator | None = None,
    n_realisations: int = 1,
    device=None,
) -> torch.Tensor:
    """Imaged noise of total variance ``noise_var`` in the model ``params.noise_model``.

    ``"split"``: half white before the CTF (``W·H·n₁``), half after it (``W·n₂``); ``"filtered"``:
    all of it white before the filters (``W·H·n``), so its power spectrum is ``∝ |H·W|²``;
    ``"aitom"``: AITom's two halves, white with one variance, ``W·B·H·n₁`` and ``W·B·L·n₂`` (see
    :func:`aitom_filters`; :func:`image_volume` sets ``noise_var`` from AITom's nominal SNR).

    Returns (n_realisations, *shape) float64.
    """
    dims = (-3, -2, -1)
    if params.noise_model == "aitom":
        f1, f2, _, g1, g2 = _aitom_terms(tuple(shape), params, device)
        s = math.sqrt(noise_var / (g1 + g2))  # the same white σ for both halves
        n = torch.randn((n_realisations, 2, *shape), generator=generator, dtype=torch.float64).to(device)
        f = torch.fft.rfftn(n[:, 0], dim=dims) * (s * f1) + torch.fft.rfftn(n[:, 1], dim=dims) * (s * f2)
        return torch.fft.irfftn(f, s=tuple(shape), dim=dims)
    h, w, g1, g2 = _filters(tuple(shape), params, device)
    if params.noise_model == "filtered":
        if g1 <= 0:
            raise ConfigError("ImagingParams", "band-pass · CTF · wedge pass nothing, so filtered noise cannot "
                              "reach the SNR", "widen the band-pass or use noise_model='split'")
        n = torch.randn((n_realisations, *shape), generator=generator, dtype=torch.float64).to(device)
        return torch.fft.ifftn(torch.fft.fftn(n, dim=dims) * (math.sqrt(noise_var / g1) * h * w), dim=dims).real
    s1 = math.sqrt(0.5 * noise_var / g1) if g1 > 0 else 0.0
    s2 = math.sqrt(0.5 * noise_var / g2)
    n = torch.randn((n_realisations, 2, *shape), generator=generator, dtype=torch.float64).to(device)
    f = torch.fft.fftn(n[:, 0], dim=dims) * (s1 * h * w) + torch.fft.fftn(n[:, 1], dim=dims) * (s2 * w)
    return torch.fft.ifftn(f, dim=dims).real


def measured_snr(signal: torch.Tensor | np.ndarray, noise: torch.Tensor | np.ndarray) -> float:
    """``var(signal) / var(noise)`` as measured (``inf`` when the noise is zero).

    Args:
        signal: a noise-free imaged volume (any shape; CPU tensor or array).
        noise: the noise of one or more realisations (any shape; the variance is pooled).
    """
    noise_var = float(np.var(np.asarray(noise, dtype=np.float64)))
    return float(np.var(np.asarray(signal, dtype=np.float64))) / noise_var if noise_var > 0 else math.inf


def aitom_noise_variance(density: torch.Tensor, snr: float, params: ImagingParams = ImagingParams()) -> float:
    """AITom's white noise variance for each half (before and after the CTF) at nominal ``snr``.

    ``σ² = ½ · var(F⁻¹[H·W·F(density)]) / (mean(|H·W|²) · snr)``, the variance taken over the whole
    ``density``: AITom's ``WeiProj / SNR · signal_variance · corrfac`` in ``do_reconstruction``.

    Args:
        density: (D, H, W) the whole volume that is imaged (before any crop).
        snr: AITom's nominal SNR (> 0).
    """
    _, _, g_ref, _ = _filters(tuple(density.shape), params, density.device)
    if g_ref <= 0:
        raise ConfigError("ImagingParams", "band-pass · CTF · wedge pass nothing, so AITom's signal variance is 0",
                          "widen the band-pass or use noise_model='split'")
    ref = _filter_real(density, _signal_filter(tuple(density.shape), params, density.device, reference=True))
    return 0.5 * ref.var().item() / (g_ref * snr)


def signal_and_noise(
    density: torch.Tensor,
    snr: float,
    params: ImagingParams = ImagingParams(),
    generator: torch.Generator | None = None,
    crop: tuple[slice, slice, slice] | None = None,
    n_realisations: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The two parts of :func:`image_volume`'s output, kept apart: ``observed = signal + noise``.

    Same arguments as :func:`image_volume`. The noise's level is set by ``density`` (its imaged
    variance over the crop, or over the whole map with noise_model="aitom"), and the noise itself is
    drawn from ``generator`` alone, so adding it to another imaged density (e.g. the box without its
    target, a context control) gives that density under the very same noise.

    Returns:
        ``(signal, noise)``: the noise-free imaged signal (*crop shape) and the imaged noise
        (n_realisations, *crop shape), both float64; the noise is zero for ``snr=inf``.
    """
    crop = crop or (slice(None),) * 3
    signal = imaged_signal(density, params)[crop]
    if math.isinf(snr):
        return signal, torch.zeros((n_realisations, *signal.shape), dtype=signal.dtype, device=signal.device)
    if snr <= 0:
        raise ValueError(f"snr must be > 0 (or inf), got {snr}")
    if params.noise_model == "aitom":
        shape = tuple(density.shape)
        _, _, _, g1, g2 = _aitom_terms(shape, params, density.device)
        var = aitom_noise_variance(density, snr, params) * (g1 + g2)
        return signal, imaged_noise(shape, var, params, generator, n_realisations, density.device)[(slice(None), *crop)]
    # the noise is stationary: draw it directly at the crop's size (cheaper, and its wedge stays exact)
    return signal, imaged_noise(tuple(signal.shape), signal.var().item() / snr, params, generator, n_realisations,
                                density.device)


def image_volume(
    density: torch.Tensor,
    snr: float,
    params: ImagingParams = ImagingParams(),
    generator: torch.Generator | None = None,
    crop: tuple[slice, slice, slice] | None = None,
    n_realisations: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Image a density map: band-pass, CTF, missing wedge, and noise at ``snr``.

    Args:
        density: (D, H, W) clean density (any scale).
        snr: signal variance / noise variance in the output (``inf`` = no noise); with
            noise_model="aitom", AITom's nominal SNR (:func:`aitom_noise_variance`).
        params: the imaging parameters.
        generator: a ``torch.Generator`` for the noise (reproducible runs).
        crop: region of the imaged map that is returned and where the signal variance is
            measured; the (stationary) noise is drawn at the crop's size. With "aitom", the signal
            variance is that of the whole map and the noise is drawn over the whole map, then
            cropped, as AITom images its whole packing map and then trims the subtomogram.
        n_realisations: number of independent noise realisations of the same signal.

    Returns:
        ``(observed, signal)``: observed (n_realisations, *crop shape) and the noise-free imaged
        signal (*crop shape), both float32 (:func:`signal_and_noise` keeps the noise apart).
    """
    signal, noise = signal_and_noise(density, snr, params, generator, crop, n_realisations)
    return (signal + noise).float(), signal.float()
