"""Views of a whole batch at once, on the batch's device (GPU-side augmentation for pretraining).

The per-sample views (:func:`~cryomonai.transforms.paper_views`, :func:`~cryomonai.transforms.cryo3d_views`)
run in the data loader's worker processes: on a CPU they keep up with RB3D many times over, but a
GPU trains thousands of subtomograms per second and one worker makes a few hundred view pairs.
:class:`BatchedViews` makes the same views from a ``(B, C, D, H, W)`` batch (axes z, y, x) in a
handful of batched tensor operations wherever the batch lies:

1. **Fourier jitter** (``cryo3d_views`` steps 1–3): one ``rfftn`` of the batch, times each
   sample's low-pass (raised cosine at ``U(lowpass_cutoff)`` × Nyquist) and ``|CTF|`` (defocus
   ``U(defocus_range_um)``) — or 1 where the coin says no —, back with ``irfftn``; then noise
   shaped by the missing wedge of ``tilt_range`` that divides the sample's SNR by
   ``U(noise_factor_range)`` (:class:`~cryomonai.transforms.RandSNRJitter`'s rule).
2. **Spatial steps** as batched ``torch.nn.functional.affine_grid`` + ``grid_sample``, one affine
   matrix per sample: the rotation (``"beam"``: about z by ``U(±beam_angle_deg)``; ``"so3"``:
   uniform on SO(3) from a normalised Gaussian quaternion; ``"d2"`` / ``"d2h"``: an axis-aligned
   180° turn / also a mirror, whose samples fall on voxel centres), the shift (``U(±shift_voxels)`` voxels
   per axis), the random resized crop (3D, or (y, x) only for the paper) and the paper's in-plane
   affine. By default each step resamples, as the
   per-sample pipeline does: each bilinear interpolation low-passes a little, and the views then
   have the per-sample views' spectrum (tested). ``resample_each_step=False`` composes them into
   one matrix and one interpolation: sharper views, fastest, but not the same distribution (with
   SO(3) ``cryo3d_views`` on 16³, ~14 % less power in the lowest bands after normalisation).
3. **Missing wedge** re-imposed after an SO(3) rotation: ``rfftn`` × wedge mask, ``irfftn``.
4. **Normalise** each view (zero mean, unit std per channel), for ``cryo3d_views``.

Each random draw has the distribution of the per-sample transform's (crop positions are
continuous here, integers there). Random numbers come from torch's generator of the batch's device,
so :class:`~cryomonai.engines.RNGState` (which reseeds torch at each epoch) makes them a function
of (seed, epoch): a resumed run draws the same views.

The bundle turns this on with ``augment_on_device`` (default off: its GPU speed and its parity
with the per-sample views in pretraining quality are not established yet): the loader then
only normalises, and :class:`~cryomonai.engines.SSLPrepareBatch` makes the views on the device.
The views are configured like the per-sample ones: ``paper_views(...)``, ``cryo3d_views(...)`` and
``finetune_views(...)`` (one view, for supervised fine-tuning: :class:`~cryomonai.engines.SupervisedPrepareBatch`)
return a ``ViewPipeline`` whose ``.batched()`` is its twin here, built from the same arguments.

Example:
    >>> from cryomonai.transforms import cryo3d_views
    >>> views = cryo3d_views(rotation="so3").batched()
    >>> v0, v1 = views(torch.randn(4, 1, 16, 16, 16))
    >>> tuple(v0.shape), bool((v0 != v1).any())
    ((4, 1, 16, 16, 16), True)
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from cryomonai.errors import ConfigError
from cryomonai.physics.ctf import ctf_of_frequency
from cryomonai.physics.fourier import fourier_grid, raised_cosine_lowpass
from cryomonai.physics.wedge import missing_wedge_mask
from cryomonai.transforms.spatial import ROTATIONS, RandWedgeTurn

__all__ = ["BatchedViews", "affine_theta", "random_rotations"]

_SPATIAL = (-3, -2, -1)
# the keys of each spatial step, in pipeline order
_STEPS = (("rotation",), ("shift",), ("crop_scale", "crop_centre"), ("affine", "affine_shift"))


def _pair(value: Sequence[float]) -> tuple[float, float]:
    """A ``(min, max)`` range as two floats."""
    return float(value[0]), float(value[1])


def _symmetric(value: float | Sequence[float]) -> tuple[float, float]:
    """``a`` → ``(−a, a)``; a pair stays a pair (``beam_angle_deg``, as ``beam_rotation``)."""
    return (-float(value), float(value)) if isinstance(value, (int, float)) else _pair(value)


@functools.lru_cache(maxsize=16)
def _half_grids(shape: tuple[int, int, int], tilt_range: tuple[float, float] | None, device: torch.device):
    """(|k| / Nyquist, wedge mask, mean of the full wedge mask) in ``rfftn`` layout, float32, cached."""
    kz, ky, kx = fourier_grid(shape, device, half=True)
    r = (torch.sqrt(kz**2 + ky**2 + kx**2) / 0.5).float()
    if tilt_range is None:
        return r, None, 1.0
    full = missing_wedge_mask(shape, tilt_range, device)
    return r, full[..., : shape[2] // 2 + 1].float(), float(full.float().mean())


def random_rotations(n: int, device: torch.device | str = "cpu", dtype=torch.float32) -> torch.Tensor:
    """``n`` rotation matrices ``(n, 3, 3)`` uniform on SO(3) (Haar): normalised Gaussian quaternions."""
    q = torch.randn(n, 4, device=device, dtype=torch.float64)
    w, x, y, z = (q / q.norm(dim=1, keepdim=True)).unbind(1)
    rows = [
        1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
        2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
        2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
    ]  # fmt: skip
    return torch.stack(rows, 1).reshape(n, 3, 3).to(dtype)


def _about_z(angle: torch.Tensor) -> torch.Tensor:
    """Rotations ``(n, 3, 3)`` by ``angle`` (radians) in the (y, x) plane, acting on (z, y, x) coordinates."""
    c, s = torch.cos(angle), torch.sin(angle)
    one, zero = torch.ones_like(c), torch.zeros_like(c)
    return torch.stack([one, zero, zero, zero, c, -s, zero, s, c], 1).reshape(-1, 3, 3)


def _homogeneous(linear: torch.Tensor, shift: torch.Tensor | None = None) -> torch.Tensor:
    """``(n, 4, 4)`` from a linear part ``(n, 3, 3)`` and a shift ``(n, 3)``."""
    m = torch.zeros(linear.shape[0], 4, 4, device=linear.device, dtype=linear.dtype)
    m[:, :3, :3] = linear
    m[:, 3, 3] = 1
    if shift is not None:
        m[:, :3, 3] = shift
    return m


def affine_theta(params: dict[str, torch.Tensor], shape: Sequence[int]) -> torch.Tensor:
    """``affine_grid``'s ``theta`` ``(n, 3, 4)`` for the spatial steps in ``params``, in pipeline order.

    Each step maps output to input coordinates (as MONAI's ``Affine``), in (z, y, x) order:

    * ``"rotation"`` ``(n, 3, 3)``: a linear map of voxel coordinates about the box centre (as
      :class:`~cryomonai.transforms.RandSO3Rotate`'s ``matrix``);
    * ``"shift"`` ``(n, 3)``: a translation in voxels (as :class:`~cryomonai.transforms.RandShift`'s
      ``shift``: output voxel ``p`` samples the input at ``p + shift``);
    * ``"crop_scale"``, ``"crop_centre"`` ``(n, 3)``: the crop's side and centre as fractions of
      the half-box (``[-1, 1]`` spans the box), resized back to the box;
    * ``"affine"`` ``(n, 3, 3)`` (voxel coordinates) and ``"affine_shift"`` ``(n, 3)`` (fractions of
      the half-box): the paper's in-plane affine.

    A volume made by step 1 then step 2 samples the input at ``M₁ M₂ p``; ``affine_grid`` wants
    normalised (x, y, z), so the product is conjugated by the axis reversal.
    """
    some = next(iter(params.values()))
    n, dev = some.shape[0], some.device
    to_norm, to_vox, reverse = _frames(tuple(int(v) for v in shape[-3:]), dev)
    total, eye = torch.eye(4, device=dev).expand(n, 4, 4), torch.eye(3, device=dev).expand(n, 3, 3)
    if "rotation" in params:
        total = total @ to_norm @ _homogeneous(params["rotation"].float()) @ to_vox
    if "shift" in params:
        total = total @ to_norm @ _homogeneous(eye, params["shift"].float()) @ to_vox
    if "crop_scale" in params:
        total = total @ _homogeneous(torch.diag_embed(params["crop_scale"].float()), params["crop_centre"].float())
    if "affine" in params:
        shift = _homogeneous(eye, params["affine_shift"].float())
        total = total @ to_norm @ _homogeneous(params["affine"].float()) @ to_vox @ shift
    return (reverse @ total @ reverse)[:, :3, :]


def _wedge_turn_signs(n: int, mirror: bool, device: torch.device) -> torch.Tensor:
    """``(n, 3)`` axis signs of :class:`~cryomonai.transforms.RandWedgeTurn`'s group elements, uniform:
    the identity or a 180° turn (two axes negated) — or, with ``mirror``, each axis negated with probability ½."""
    if mirror:
        return torch.where(torch.rand(n, 3, device=device) < 0.5, -1.0, 1.0)
    turns = torch.tensor([[-1.0 if a in axes else 1.0 for a in range(3)] for axes in RandWedgeTurn.TURNS], device=device)
    return turns[torch.randint(len(turns), (n,), device=device)]


@functools.lru_cache(maxsize=16)
def _frames(shape: tuple[int, int, int], device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """4×4 maps for a (D, H, W) box: voxel-centred → ``[-1, 1]``, back, and the (z, y, x) ↔ (x, y, z) reversal."""
    d, h, w = (float(v) for v in shape)
    to_norm = torch.diag(torch.tensor([2 / d, 2 / h, 2 / w, 1.0], device=device))
    to_vox = torch.diag(torch.tensor([d / 2, h / 2, w / 2, 1.0], device=device))
    return to_norm, to_vox, torch.eye(4, device=device)[[2, 1, 0, 3]]


def _coin(n: int, prob: float, device: torch.device) -> torch.Tensor:
    """``n`` booleans, each true with probability ``prob``."""
    return torch.rand(n, device=device) < prob


def _uniform(n: int, bounds: tuple[float, float], device: torch.device) -> torch.Tensor:
    return bounds[0] + (bounds[1] - bounds[0]) * torch.rand(n, device=device)


@dataclass
class BatchedViews:
    """``n_views`` random views of every sample of a ``(B, C, D, H, W)`` batch, on its device.

    Build it from a view factory: ``paper_views(...).batched()`` or ``cryo3d_views(...).batched()``
    (same keyword arguments, one set of defaults); the fields are the stages of the module docstring.
    Calling it returns a list of ``n_views`` float32 tensors shaped like the batch.
    """

    n_views: int = 2
    # 1. Fourier jitter (probabilities 0: off)
    lowpass_prob: float = 0.0
    lowpass_cutoff: tuple[float, float] = (0.5, 1.0)
    lowpass_width: float = 0.05
    ctf_prob: float = 0.0
    defocus_range_um: tuple[float, float] = (-6.0, -2.0)
    microscope: dict = field(default_factory=dict)
    abs_ctf: bool = True
    noise_prob: float = 0.0
    noise_factor_range: tuple[float, float] = (1.0, 3.0)
    input_snr: float = 0.1
    tilt_range: tuple[float, float] | None = None
    # 2. spatial, composed in this order: rotation, shift, crop, in-plane affine
    rotation: str | None = None  # one of ROTATIONS ("beam", "so3", "d2", "d2h") or None
    rotation_prob: float = 1.0
    beam_angle_deg: tuple[float, float] = (-180.0, 180.0)
    shift_voxels: float = 0.0  # U(±shift_voxels) voxels along each axis; 0: off
    crop_prob: float = 0.0
    crop_scale: tuple[float, float] = (0.5, 1.0)
    crop_axes: str = "zyx"  # "zyx": 3D crop, "yx": in-plane crop keeping every z
    affine_prob: float = 0.0
    max_rotation_deg: float = 45.0
    max_translation: float = 0.1
    scale_range: tuple[float, float] = (0.9, 1.1)
    mode: str = "bilinear"
    padding_mode: str = "zeros"
    resample_each_step: bool = True  # one interpolation per spatial step, as the per-sample pipeline
    # 3.-4.
    reimpose_wedge: bool = False
    normalise: bool = False

    def __post_init__(self) -> None:
        if self.rotation is not None and self.rotation not in ROTATIONS:
            raise ConfigError("BatchedViews", f"rotation={self.rotation!r} is unknown", f"use one of {list(ROTATIONS)}")
        if self.noise_factor_range[0] < 1.0:
            raise ConfigError("BatchedViews", f"noise_factor_range {self.noise_factor_range} has a factor below 1",
                              "use factors >= 1 (1 = no noise)")
        if self.shift_voxels < 0:
            raise ConfigError("BatchedViews", f"shift_voxels={self.shift_voxels} is negative",
                              "give the largest |shift| in voxels, >= 0")
        if self.n_views < 1:
            raise ConfigError("BatchedViews", f"n_views={self.n_views}", "ask for at least one view")

    # ------------------------------------------------------------------ from a view factory's arguments
    @classmethod
    def from_paper_views(cls, o: Mapping[str, Any]) -> BatchedViews:
        """The twin of ``paper_views(**o)`` (in-plane crop, then in-plane affine); ``o`` holds all its arguments."""
        return cls(n_views=o["n_views"], crop_prob=o["crop_prob"], crop_scale=_pair(o["crop_scale"]), crop_axes="yx",
                   affine_prob=o["affine_prob"], max_rotation_deg=o["max_rotation_deg"],
                   max_translation=o["max_translation"], scale_range=_pair(o["scale_range"]), mode=o["mode"])

    @classmethod
    def from_cryo3d_views(cls, o: Mapping[str, Any]) -> BatchedViews:
        """The twin of ``cryo3d_views(**o)`` (and ``finetune_views``: one view); ``o`` holds all its arguments."""
        tilt = None if o["tilt_range"] is None else _pair(o["tilt_range"])
        microscope = dict(pixel_size_nm=float(o["pixel_size_nm"]), voltage_kv=float(o["voltage_kv"]),
                          cs_mm=float(o["cs_mm"]), envelope_sigma=0.0, amplitude_contrast=float(o["amplitude_contrast"]))
        return cls(n_views=o["n_views"], lowpass_prob=o["lowpass_prob"], lowpass_cutoff=_pair(o["lowpass_cutoff"]),
                   lowpass_width=o["lowpass_width"], ctf_prob=o["ctf_prob"],
                   defocus_range_um=_pair(o["defocus_range_um"]), microscope=microscope, abs_ctf=o["abs_ctf"],
                   noise_prob=o["noise_prob"], noise_factor_range=_pair(o["noise_factor_range"]),
                   input_snr=o["input_snr"], tilt_range=tilt, rotation=o["rotation"],
                   rotation_prob=o["rotation_prob"], beam_angle_deg=_symmetric(o["beam_angle_deg"]),
                   shift_voxels=float(o["shift_voxels"]), crop_prob=o["crop_prob"],
                   crop_scale=_pair(o["crop_scale"]), crop_axes="zyx", mode=o["mode"],
                   padding_mode=o["padding_mode"], reimpose_wedge=o["rotation"] == "so3" and tilt is not None,
                   normalise=True)

    # ------------------------------------------------------------------ stages
    def fourier_jitter(self, x: torch.Tensor) -> torch.Tensor:
        """Stage 1 on ``x`` ``(N, C, D, H, W)``: per-sample low-pass and ``|CTF|``, then SNR-dividing noise."""
        n, shape, dev = x.shape[0], tuple(x.shape[-3:]), x.device
        r, wedge, wedge_mean = _half_grids(shape, self.tilt_range, dev)
        per_sample = (n, 1, 1, 1, 1)
        if self.lowpass_prob > 0 or self.ctf_prob > 0:
            cutoff = torch.where(_coin(n, self.lowpass_prob, dev), _uniform(n, self.lowpass_cutoff, dev), 2.0)
            filt = raised_cosine_lowpass(r, cutoff.view(per_sample), self.lowpass_width)
            if self.ctf_prob > 0:
                defocus = _uniform(n, self.defocus_range_um, dev).view(per_sample)
                k = r * (0.5 / self.microscope["pixel_size_nm"])  # 1/nm
                ctf = ctf_of_frequency(k, defocus_um=defocus, **self.microscope)
                ctf = ctf.abs() if self.abs_ctf else ctf
                filt = filt * torch.where(_coin(n, self.ctf_prob, dev).view(per_sample), ctf, 1.0)
            x = torch.fft.irfftn(torch.fft.rfftn(x, dim=_SPATIAL) * filt, s=shape, dim=_SPATIAL)
        if self.noise_prob > 0:
            factor = torch.where(_coin(n, self.noise_prob, dev), _uniform(n, self.noise_factor_range, dev), 1.0)
            noise = torch.randn_like(x)
            if wedge is not None:  # wedge-shaped like tomographic noise, unit variance again
                noise = torch.fft.irfftn(torch.fft.rfftn(noise, dim=_SPATIAL) * wedge, s=shape, dim=_SPATIAL)
                noise = noise / math.sqrt(wedge_mean)
            var = x.var(dim=(1, 2, 3, 4))
            sigma = ((factor - 1.0) * var / (1.0 + self.input_snr)).sqrt()
            x = x + noise * sigma.view(per_sample)
        return x

    def spatial_params(self, n: int, device: torch.device) -> dict[str, torch.Tensor]:
        """Draw stage 2's parameters for ``n`` samples (keys of :func:`affine_theta`; identity where a coin says no)."""
        eye = torch.eye(3, device=device).expand(n, 3, 3)
        params: dict[str, torch.Tensor] = {}
        if self.rotation is not None:
            if self.rotation == "so3":
                rot = random_rotations(n, device)
            elif self.rotation in ("d2", "d2h"):  # RandWedgeTurn's draw: sign flips of two axes (or, d2h, any)
                rot = torch.diag_embed(_wedge_turn_signs(n, self.rotation == "d2h", device))
            else:
                rot = _about_z(torch.deg2rad(_uniform(n, self.beam_angle_deg, device)))
            params["rotation"] = torch.where(_coin(n, self.rotation_prob, device).view(n, 1, 1), rot, eye)
        if self.shift_voxels > 0:  # (n, 3) voxels, z y x
            params["shift"] = self.shift_voxels * (2 * torch.rand(n, 3, device=device) - 1)
        if self.crop_prob > 0:  # keep a fraction f of the volume (or area): side f^(1/k) of the k cropped axes
            cropped = [self.crop_axes == "zyx", True, True]
            axes = torch.tensor(cropped, device=device)
            frac = torch.where(_coin(n, self.crop_prob, device), _uniform(n, self.crop_scale, device), 1.0)
            side = torch.where(axes, (frac ** (1.0 / sum(cropped)))[:, None], 1.0)  # (n, 3)
            params["crop_scale"] = side
            params["crop_centre"] = (1 - side) * (2 * torch.rand(n, 3, device=device) - 1)
        if self.affine_prob > 0:  # rotation about z, isotropic (y, x) scale, (y, x) shift
            on = _coin(n, self.affine_prob, device)
            angle = torch.deg2rad(_uniform(n, (-self.max_rotation_deg, self.max_rotation_deg), device))
            s = _uniform(n, self.scale_range, device)
            lin = _about_z(angle) @ torch.diag_embed(torch.stack([torch.ones_like(s), s, s], 1))
            shift = 2 * self.max_translation * (2 * torch.rand(n, 3, device=device) - 1)
            shift[:, 0] = 0
            params["affine"] = torch.where(on.view(n, 1, 1), lin, eye)
            params["affine_shift"] = torch.where(on.view(n, 1), shift, 0.0)
        return params

    def resample(self, x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """Stage 2: sample ``x`` ``(N, C, D, H, W)`` at ``theta`` ``(N, 3, 4)`` (output → input, normalised)."""
        grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode=self.mode, padding_mode=self.padding_mode, align_corners=False)

    def impose_wedge(self, x: torch.Tensor) -> torch.Tensor:
        """Stage 3: zero the Fourier samples of the missing wedge of ``tilt_range``."""
        shape = tuple(x.shape[-3:])
        wedge = _half_grids(shape, self.tilt_range, x.device)[1]
        return torch.fft.irfftn(torch.fft.rfftn(x, dim=_SPATIAL) * wedge, s=shape, dim=_SPATIAL)

    @staticmethod
    def normalise_views(x: torch.Tensor) -> torch.Tensor:
        """Stage 4: zero mean, unit std per sample and channel (a constant volume is only centred)."""
        mean = x.mean(dim=_SPATIAL, keepdim=True)
        std = x.std(dim=_SPATIAL, keepdim=True, unbiased=False)
        return (x - mean) / torch.where(std > 0, std, 1.0)

    def __call__(self, batch: torch.Tensor) -> list[torch.Tensor]:
        """``n_views`` augmented copies of ``batch`` ``(B, C, D, H, W)``, each drawn independently."""
        if batch.ndim != 5 or batch.is_complex():
            raise ConfigError("BatchedViews", f"expected a real (B, C, D, H, W) batch, got shape {tuple(batch.shape)}",
                              "give the collated 'image' batch of (1, D, H, W) subtomograms")
        b = batch.shape[0]
        x = batch.float().contiguous().repeat(self.n_views, 1, 1, 1, 1)  # all views in one pass
        if self.lowpass_prob > 0 or self.ctf_prob > 0 or self.noise_prob > 0:
            x = self.fourier_jitter(x)
        if self.rotation is not None or self.shift_voxels > 0 or self.crop_prob > 0 or self.affine_prob > 0:
            params = self.spatial_params(x.shape[0], x.device)
            steps = [{k: params[k] for k in step if k in params} for step in _STEPS] if self.resample_each_step else [params]
            for step in filter(None, steps):
                x = self.resample(x, affine_theta(step, x.shape))
        if self.reimpose_wedge:
            x = self.impose_wedge(x)
        if self.normalise:
            x = self.normalise_views(x)
        return list(x.split(b))
