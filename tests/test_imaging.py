"""The imaging model: wedge geometry, CTF zeros, band-pass, and noise at the requested SNR."""

import math

import numpy as np
import pytest
import torch

from cryomonai.simulate.imaging import (
    ImagingParams,
    apply_fourier_filter,
    bandpass_filter,
    ctf_3d,
    electron_wavelength_nm,
    fourier_grid,
    image_volume,
    imaged_noise,
    imaged_signal,
    missing_wedge_mask,
)
from cryomonai.errors import CryoDataError


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
    with pytest.raises(CryoDataError, match="noise_model"):
        ImagingParams(noise_model="aitom2")
