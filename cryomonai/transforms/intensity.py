"""Intensity augmentations of (C, D, H, W) subtomograms: SNR, low-pass and CTF jitter.

These are our additions (the paper's pipeline, §3.3, is spatial only); all work in Fourier space
with the filters of :mod:`cryomonai.physics` and follow the input's device. Noise comes
from a ``torch.Generator`` seeded from the transform's ``self.R``, so a seed reproduces it on any
device without a numpy round-trip. Per-volume normalisation is MONAI's ``NormalizeIntensityd``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from monai.transforms import RandomizableTransform
from monai.utils import convert_to_dst_type, convert_to_tensor
from monai.utils.enums import TransformBackends

from cryomonai.errors import ConfigError
from cryomonai.physics.ctf import ctf_3d
from cryomonai.physics.fourier import apply_fourier_filter, bandpass_filter
from cryomonai.transforms.base import RandArrayd, RandVolumeTransform, check_volume
from cryomonai.transforms.wedge import wedge_filter

__all__ = ["RandSNRJitter", "RandSNRJitterd", "RandLowPass", "RandLowPassd", "RandCTF", "RandCTFd"]


class RandSNRJitter(RandomizableTransform):
    """Add white Gaussian noise so that the volume's SNR drops by a random factor.

    With ``SNR = var(signal) / var(noise)`` (as in :mod:`cryomonai.simulate.imaging`) and the
    input's SNR ``input_snr``, the input's noise variance is ``var(x) / (1 + input_snr)``;
    adding ``(f − 1)`` times that divides the SNR by ``f ~ U(factor_range)``. The estimate only
    matters through ``input_snr``: too low a value drops the SNR by more than ``f``.
    With ``tilt_range`` the added noise is wedge-shaped like tomographic noise (its variance kept),
    so a wedge-masked volume keeps its empty wedge.

    Args:
        prob: probability of adding noise.
        factor_range: range of the factor by which the SNR is divided (≥ 1).
        input_snr: the data's SNR (cryo-ET subtomograms: ~0.01–0.5).
        tilt_range: (min, max) tilt in degrees to shape the noise with, or ``None`` for white noise.

    Example:
        >>> jitter = RandSNRJitter(prob=1.0, factor_range=(2.0, 2.0), input_snr=0.0).set_random_state(0)
        >>> x = torch.randn(1, 16, 16, 16, generator=torch.Generator().manual_seed(0))
        >>> abs(float(jitter(x).var() / x.var()) - 2.0) < 0.15   # pure noise in, twice the noise out
        True
    """

    backend = [TransformBackends.TORCH]

    def __init__(
        self,
        prob: float = 0.5,
        factor_range: Sequence[float] = (1.0, 3.0),
        input_snr: float = 0.1,
        tilt_range: Sequence[float] | None = None,
    ) -> None:
        super().__init__(prob)
        self.factor_range = (float(factor_range[0]), float(factor_range[1]))
        if self.factor_range[0] < 1.0:
            raise ConfigError(
                "RandSNRJitter",
                f"factor_range {self.factor_range} has a factor below 1",
                "use factors >= 1 (1 = no noise)",
            )
        self.input_snr = float(input_snr)
        self.tilt_range = None if tilt_range is None else (float(tilt_range[0]), float(tilt_range[1]))
        self.factor = 1.0
        self._seed = 0

    def randomize(self, data: Any = None) -> None:
        """Draw the SNR factor and the noise seed (``data`` is not used)."""
        super().randomize(None)
        if self._do_transform:
            self.factor = float(self.R.uniform(*self.factor_range))
            self._seed = int(self.R.randint(0, 2**31 - 1))

    def __call__(self, img: Any, randomize: bool = True) -> torch.Tensor:
        """Add the noise to a (C, D, H, W) volume; returns the same shape and type."""
        img = check_volume(img, type(self).__name__)
        if randomize:
            self.randomize()
        if not self._do_transform or self.factor == 1.0:
            return img
        t = convert_to_tensor(img, track_meta=False)
        gen = torch.Generator(device=t.device).manual_seed(self._seed)
        noise = torch.randn(t.shape, generator=gen, device=t.device, dtype=t.dtype)
        if self.tilt_range is not None:
            filt = wedge_filter(tuple(t.shape[1:]), self.tilt_range, t.device)
            noise = apply_fourier_filter(noise, filt) / filt.mean().sqrt()  # unit variance again
        noise_var = (self.factor - 1.0) * t.var() / (1.0 + self.input_snr)
        return convert_to_dst_type(t + noise * noise_var.sqrt(), img)[0]


class _RandFourierFilter(RandVolumeTransform):
    """Shared mechanics of the random Fourier filters: draw a parameter, filter a (C, D, H, W) volume."""

    def _draw(self) -> None:
        """Draw this transform's random parameter from ``self.R``."""
        raise NotImplementedError

    def _filter(self, shape: tuple[int, int, int], device: torch.device) -> torch.Tensor:
        """The real Fourier filter (fftn layout) for a volume of ``shape``."""
        raise NotImplementedError

    def randomize(self, data: Any = None) -> None:
        """Draw whether to filter and the parameter (``data`` is not used)."""
        super().randomize(None)
        if self._do_transform:
            self._draw()

    def apply(self, img: torch.Tensor) -> torch.Tensor:
        """Filter a (C, D, H, W) volume; returns the same shape and type."""
        t = convert_to_tensor(img, track_meta=False)
        return convert_to_dst_type(apply_fourier_filter(t, self._filter(tuple(t.shape[1:]), t.device)), img)[0]


class RandLowPass(_RandFourierFilter):
    """Low-pass a volume at a random cut-off (a smooth raised-cosine edge).

    Args:
        prob: probability of filtering.
        cutoff_range: range of the cut-off as a fraction of Nyquist (1 = Nyquist sphere).
        width: width of the raised-cosine edge, fraction of Nyquist.
    """

    def __init__(self, prob: float = 0.3, cutoff_range: Sequence[float] = (0.5, 1.0), width: float = 0.05) -> None:
        super().__init__(prob)
        self.cutoff_range = (float(cutoff_range[0]), float(cutoff_range[1]))
        self.width = float(width)
        self.cutoff = 1.0

    def _draw(self) -> None:
        self.cutoff = float(self.R.uniform(*self.cutoff_range))

    def _filter(self, shape: tuple[int, int, int], device: torch.device) -> torch.Tensor:
        return bandpass_filter(shape, 0.0, self.cutoff, self.width, device=device)


class RandCTF(_RandFourierFilter):
    """Multiply a volume's spectrum by the CTF of a random defocus (``ctf_3d``'s model).

    The data were already imaged through a CTF; ``abs_ctf=True`` multiplies by ``|CTF|`` (its
    amplitude modulation and zeros, without flipping the contrast of whole frequency bands), while
    ``False`` applies the signed CTF (a second imaging pass). Parameters as
    :func:`cryomonai.physics.ctf.ctf_3d`; ``envelope_sigma=0`` leaves the damping to
    :class:`RandLowPass`.

    Args:
        prob: probability of filtering.
        defocus_range_um: range of the defocus in µm (negative = underfocus).
        pixel_size_nm: voxel size of the data in nm.
        voltage_kv, cs_mm, amplitude_contrast, envelope_sigma: the microscope (see ``ctf_3d``).
        abs_ctf: multiply by ``|CTF|`` instead of the signed CTF.
    """

    def __init__(
        self,
        prob: float = 0.2,
        defocus_range_um: Sequence[float] = (-6.0, -2.0),
        pixel_size_nm: float = 1.0,
        voltage_kv: float = 300.0,
        cs_mm: float = 2.0,
        amplitude_contrast: float = 0.07,
        envelope_sigma: float = 0.0,
        abs_ctf: bool = True,
    ) -> None:
        super().__init__(prob)
        self.defocus_range_um = (float(defocus_range_um[0]), float(defocus_range_um[1]))
        self.microscope = dict(
            pixel_size_nm=float(pixel_size_nm),
            voltage_kv=float(voltage_kv),
            cs_mm=float(cs_mm),
            envelope_sigma=float(envelope_sigma),
            amplitude_contrast=float(amplitude_contrast),
        )
        self.abs_ctf = bool(abs_ctf)
        self.defocus_um = self.defocus_range_um[0]

    def _draw(self) -> None:
        self.defocus_um = float(self.R.uniform(*self.defocus_range_um))

    def _filter(self, shape: tuple[int, int, int], device: torch.device) -> torch.Tensor:
        ctf = ctf_3d(shape, defocus_um=self.defocus_um, device=device, **self.microscope)
        return ctf.abs() if self.abs_ctf else ctf


class RandSNRJitterd(RandArrayd, array=RandSNRJitter):
    """Dictionary twin of :class:`RandSNRJitter` (the same noise field for all ``keys``)."""


class RandLowPassd(RandArrayd, array=RandLowPass):
    """Dictionary twin of :class:`RandLowPass`."""


class RandCTFd(RandArrayd, array=RandCTF):
    """Dictionary twin of :class:`RandCTF`."""
