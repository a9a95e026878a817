"""The imaging model: wedge geometry, CTF zeros, band-pass, and noise at the requested SNR."""

import math

import numpy as np
import pytest
import torch

from cryomonai.physics.ctf import ctf_3d, electron_wavelength_nm
from cryomonai.physics.fourier import apply_fourier_filter, bandpass_filter, fourier_grid
from cryomonai.physics.wedge import missing_wedge_mask
from cryomonai.simulate.imaging import (
    ImagingParams,
    aitom_filters,
    aitom_noise_variance,
    image_volume,
    imaged_noise,
    imaged_signal,
    measured_snr,
)
from cryomonai.errors import ConfigError


def test_wavelength_300kv():
    assert electron_wavelength_nm(300) == pytest.approx(0.0019687, rel=1e-3)


def test_wedge_geometry_about_y():
    m = missing_wedge_mask((32, 32, 32), (-60, 60))
    kz, ky, kx = (k.expand(32, 32, 32) for k in fourier_grid((32, 32, 32)))
    # measured iff |angle from the kx axis in the kz-kx plane| <= 60°, independent of ky (tilt axis)
    inside = (kz.abs() <= kx.abs() * math.tan(math.radians(60)) + 1e-9) | ((kz == 0) & (kx == 0))
    assert torch.equal(m, inside)
    assert m[:, 5, :].equal(m[:, 0, :])  # same for every ky
    assert not m[5, 0, 0] and m[0, 0, 5] and m[0, 5, 0]  # beam axis kz missing; kx, ky kept
    # fraction missing for ±60°: 60/180 of the kz-kx plane, minus the sampled corners of the cube
    assert 0.25 < 1 - m.float().mean().item() < 0.36
    assert missing_wedge_mask((16, 16, 16), (-90, 90)).all()


def test_ctf_first_zero_and_sign():
    n, pix = 128, 1.0
    ctf = ctf_3d((n, n, n), pixel_size_nm=pix, envelope_sigma=0)
    profile = ctf[0, 0, : n // 2].numpy()
    k = np.arange(n // 2) / (n * pix)  # 1/nm
    first_zero = k[np.argmax(np.sign(profile[1:]) != np.sign(profile[1]))]
    lam, dz = electron_wavelength_nm(300), 5000.0
    assert first_zero == pytest.approx(1 / math.sqrt(lam * dz), abs=2 / (n * pix))  # ~0.32 /nm (3.1 nm)
    assert profile[1] < 0  # underfocus, phase contrast: low frequencies are inverted (particles dark)
    env = ctf_3d((n, n, n), envelope_sigma=0.4)[0, 0, : n // 2].abs()
    assert env[-1] < 1e-2 < 0.1 < env[10]  # envelope exp(-(1/0.4)²) damps Nyquist


def test_bandpass_passes_and_blocks():
    b = bandpass_filter((32, 32, 32), low=0.2, high=0.6)
    assert b[0, 0, 0] < 1e-6 and b[0, 0, 6] == pytest.approx(1.0) and b[0, 0, 12] < 1e-6  # 6/32=0.19 cyc ≈ 0.375 Ny


@pytest.mark.parametrize("noise_model", ["split", "filtered"])
@pytest.mark.parametrize("snr", [0.03, 0.5, 5.0])
def test_measured_snr_matches_request(snr, noise_model):
    """SNR from the correlation ρ of two noise realisations of one signal: SNR = ρ / (1 − ρ) (Frank &
    Al-Ali 1975; 2ρ/(1−ρ) would be the SNR of their average), within 15 %."""
    g = torch.Generator().manual_seed(1)
    d = torch.rand(64, 64, 64, generator=torch.Generator().manual_seed(0))
    obs, sig = image_volume(d, snr, ImagingParams(noise_model=noise_model), g, None, n_realisations=8)
    c = np.corrcoef(obs.flatten(1).numpy())
    # mean over 28 pairs of 64³ volumes: the CTF-filtered noise has few degrees of freedom per volume
    rho = c[np.triu_indices(8, 1)].mean()
    assert rho / (1 - rho) == pytest.approx(snr, rel=0.15)
    assert sig.var() / (obs - sig).var() == pytest.approx(snr, rel=0.15)


def test_infinite_snr_is_noise_free_filtered_signal():
    d = torch.rand(24, 24, 24)
    p = ImagingParams()
    obs, sig = image_volume(d, math.inf, p)
    assert torch.equal(obs[0], sig)
    w = missing_wedge_mask(d.shape, p.tilt_range)
    power = torch.fft.fftn(sig).abs() ** 2
    assert power[~w].max() < 1e-8 * power[w].max()  # exactly wedge-masked before any cropping


def test_apply_filter_identity():
    v = torch.rand(2, 8, 8, 8)
    assert torch.allclose(apply_fourier_filter(v, torch.ones(8, 8, 8)), v, atol=1e-6)


def _noise_power(noise_model: str, shape=(32, 32, 32), n: int = 16) -> torch.Tensor:
    """Mean power spectrum of ``n`` unit-variance imaged noise realisations (fftn layout)."""
    noise = imaged_noise(shape, 1.0, ImagingParams(noise_model=noise_model), torch.Generator().manual_seed(0), n)
    assert noise.var().item() == pytest.approx(1.0, rel=0.1)
    return (torch.fft.fftn(noise, dim=(-3, -2, -1)).abs() ** 2).mean(0)


def test_filtered_noise_is_shaped_like_the_signal():
    """noise_model="filtered": nothing in the missing wedge, and the power follows |CTF|² (≈ 0 at a
    CTF zero) — unlike "split", whose half added after the CTF is white inside the wedge."""
    p = ImagingParams(noise_model="filtered")
    shape = (32, 32, 32)
    power = _noise_power("filtered", shape)
    w = missing_wedge_mask(shape, p.tilt_range)
    assert power[~w].max() < 1e-20 * power[w].max()
    gain = (ctf_3d(shape) * bandpass_filter(shape)).double() ** 2 * w  # |H·W|², the signal's transfer
    strong, zero = gain > 0.5 * gain.max(), w & (gain < 1e-4 * gain.max())
    assert zero.sum() > 100 and power[zero].mean() < 1e-3 * power[strong].mean()
    ratio = power[strong] / gain[strong]  # power ∝ |H·W|² (within the scatter of 16 realisations)
    assert ratio.std() / ratio.mean() < 0.5
    split = _noise_power("split", shape)
    assert split[zero].mean() > 0.05 * split[strong].mean()


def test_filtered_noise_and_signal_share_the_transfer():
    """White noise through imaged_signal is the filtered model's noise shape: same spectrum support."""
    p = ImagingParams(noise_model="filtered")
    white = torch.randn(4, 24, 24, 24, generator=torch.Generator().manual_seed(2))
    through_signal = (torch.fft.fftn(imaged_signal(white, p), dim=(-3, -2, -1)).abs() ** 2).mean(0)
    noise = _noise_power("filtered", (24, 24, 24), n=4)
    support = through_signal > 1e-12 * through_signal.max()
    assert torch.equal(support, noise > 1e-12 * noise.max())


def test_unknown_noise_model_is_a_user_error():
    with pytest.raises(ConfigError, match="noise_model"):
        ImagingParams(noise_model="aitom2")


# --- noise_model="aitom": AITom's do_reconstruction (simulation/reconstruction/reconstruction__simple_convolution.py)


def _aitom_sphere(n: int, radius: float, sigma: float) -> np.ndarray:
    """AITom's smooth sphere mask as its code builds it, in fftshift index space (DC at n // 2),
    returned in fftn layout: 1 within ``radius`` voxels, exp(−((d − radius)/sigma)²) beyond, 0 below e⁻³."""
    i = np.arange(n) - n // 2
    d = np.sqrt(i[:, None, None] ** 2 + i[None, :, None] ** 2 + i[None, None, :] ** 2)
    m = np.where(d <= radius, 1.0, np.exp(-(((d - radius) / sigma) ** 2)))
    m[m < math.exp(-3)] = 0.0
    return np.fft.ifftshift(m)


@pytest.mark.parametrize("n, pixel", [(32, 1.0), (24, 1.0), (32, 0.5)])
def test_aitom_filters_are_aitoms_index_space_masks(n, pixel):
    """B: tom_bandpass(hi=floor((n/8)/Nyquist[1/nm]) = floor(n·pixel/4), smooth=2); L ("MTF"):
    tom_bandpass(hi=1, smooth=0.2·n)."""
    b, l = aitom_filters((n, n, n), pixel)
    assert np.allclose(b.numpy(), _aitom_sphere(n, math.floor(n * pixel / 4), 2.0), atol=1e-12)
    assert np.allclose(l.numpy(), _aitom_sphere(n, 1.0, 0.2 * n), atol=1e-12)


def _aitom_by_hand(n: int = 32, k0: int = 4, snr: float = 0.05):
    """A known signal, cos(2π·k0·x/n) along x (in the wedge, inside AITom's band-pass), and AITom's
    noise terms computed here from the filters: the white variance σ² of each half, and the
    filters (fftn layout) the two halves pass: B·CTF·wedge before, B·L·wedge after."""
    p = ImagingParams(noise_model="aitom")
    shape = (n, n, n)
    x = torch.arange(n, dtype=torch.float64)
    v = torch.cos(2 * math.pi * k0 * x / n).expand(shape).clone()
    ctf = ctf_3d(shape).double() * bandpass_filter(shape).double()  # band-pass (0, 1): the Nyquist sphere
    wedge = missing_wedge_mask(shape, p.tilt_range).double()
    ref_var = ctf[0, 0, k0].item() ** 2 / 2  # var(F⁻¹[CTF·wedge·F(v)]): a cosine of amplitude CTF(k0)
    gain = (ctf * wedge).pow(2).mean().item()  # AITom's 1 / corrfac
    sigma2 = 0.5 * ref_var / (gain * snr)  # WeiProj / SNR · signal_variance · corrfac
    b, l = (torch.from_numpy(_aitom_sphere(n, r, s)) for r, s in ((n // 4, 2.0), (1.0, 0.2 * n)))
    return p, v, sigma2, gain, b * ctf * wedge, b * l * bandpass_filter(shape).double() * wedge


def test_aitom_noise_halves_follow_aitoms_formula():
    """(a) Each half gets AITom's white variance σ² = ½·var(CTF·wedge-filtered map)/(mean|CTF·wedge|²·SNR):
    the power spectrum of the imaged noise is σ²·(|B·CTF·W|² + |B·L·W|²), one σ² before the CTF
    and the same σ² after it (weighted least squares on 32 realisations, within 10 %)."""
    p, v, sigma2, _, f1, f2 = _aitom_by_hand()
    assert aitom_noise_variance(v, 0.05, p) == pytest.approx(sigma2, rel=1e-4)  # float32 filters
    obs, sig = image_volume(v, 0.05, p, torch.Generator().manual_seed(3), None, n_realisations=32)
    noise = (obs - sig).double()
    power = (torch.fft.fftn(noise, dim=(-3, -2, -1)).abs() ** 2).mean(0) / v.numel()  # white σ² → σ²·|f|²
    total = f1**2 + f2**2
    use = total > 1e-6
    # weighted by the expected power (the scatter of a power estimate is ∝ its mean)
    design = torch.stack([f1[use] ** 2, f2[use] ** 2], 1) / total[use, None]
    before, after = torch.linalg.lstsq(design, (power[use] / total[use])[:, None]).solution[:, 0].tolist()
    assert before == pytest.approx(sigma2, rel=0.1) and after == pytest.approx(sigma2, rel=0.1)
    assert noise.var().item() == pytest.approx(sigma2 * ((f1**2).mean() + (f2**2).mean()).item(), rel=0.05)


def test_aitom_measured_snr_is_the_derived_ratio():
    """(b) At nominal SNR 0.05 the measured var(signal)/var(noise) is 2·mean|CTF·W|²/(g₁ + g₂)·0.05
    (g = mean|f|² of the two halves' filters; B = 1 at the signal's frequency): ≈ 0.46 × 0.05 for a
    32³ volume at the default CTF, since the half after the CTF skips the CTF's small gain."""
    p, v, _, gain, f1, f2 = _aitom_by_hand()
    derived = 2 * gain / ((f1**2).mean() + (f2**2).mean()).item() * 0.05
    obs, sig = image_volume(v, 0.05, p, torch.Generator().manual_seed(4), None, n_realisations=16)
    assert measured_snr(sig, obs - sig) == pytest.approx(derived, rel=0.06)
    assert derived == pytest.approx(0.023, abs=0.002) and abs(derived - 0.05) > 0.02


def test_aitom_noise_is_reproducible_per_generator():
    """(c) The same generator seed gives the same noise, another seed other noise; the signal is AITom's
    (band-passed twice: nothing beyond its band-pass)."""
    d = torch.rand(24, 24, 24, generator=torch.Generator().manual_seed(0))
    p = ImagingParams(noise_model="aitom")
    a, sig = image_volume(d, 0.03, p, torch.Generator().manual_seed(5), (slice(4, 20),) * 3, n_realisations=2)
    b, _ = image_volume(d, 0.03, p, torch.Generator().manual_seed(5), (slice(4, 20),) * 3, n_realisations=2)
    c, _ = image_volume(d, 0.03, p, torch.Generator().manual_seed(6), (slice(4, 20),) * 3, n_realisations=2)
    assert torch.equal(a, b) and not torch.equal(a, c) and not torch.equal(a[0], a[1])
    full = imaged_signal(d, p)
    assert torch.equal(sig, full[4:20, 4:20, 4:20].float())
    assert full.abs().max() > 0 and (torch.fft.fftn(full).abs()[aitom_filters((24,) * 3)[0] == 0]).max() < 1e-9
