"""Ready pipelines for a bundle's ``_target_``: the paper's views, our 3D cryo-ET views, fine-tuning
augmentation, evaluation.

Each factory returns a MONAI ``Compose`` over data dicts whose ``"image"`` is a (1, D, H, W)
volume (spatial z, y, x). The view factories normalise once, then
:class:`~cryomonai.transforms.MultiViewd` builds ``n_views`` views (``"view_0"``, ``"view_1"`` …)
and keeps every other key (``"label"`` …); :func:`finetune_views` makes one view of the same
kind that replaces ``"image"``. Every knob is a keyword argument, so a bundle sets it as a JSON key::

    "train#transforms": {"_target_": "cryomonai.transforms.cryo3d_views", "rotation": "so3", "noise_prob": 0.8}
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from monai.config import KeysCollection
from monai.transforms import Compose, EnsureTyped, Lambdad, NormalizeIntensityd, Transform

from cryomonai.errors import ConfigError
from cryomonai.transforms.batched import BatchedViews
from cryomonai.transforms.intensity import RandCTF, RandCTFd, RandLowPassd, RandSNRJitterd
from cryomonai.transforms.spatial import (
    RandInPlaneAffined,
    RandResizedCropd,
    RandShiftd,
    RandSO3Rotated,
    RandWedgeTurnd,
    ROTATIONS,
    beam_rotation,
)
from cryomonai.transforms.views import MultiViewd
from cryomonai.transforms.wedge import ImposeMissingWedged

__all__ = ["eval_transform", "paper_views", "cryo3d_views", "finetune_views", "ViewPipeline", "loader_transform",
           "device_views"]

#: The arguments of :class:`RandCTF` that :func:`cryo3d_views` passes on under the same names, with
#: their defaults there: the microscope (and defocus range) is described once, by ``RandCTF``.
_CTF = {name: p.default for name, p in inspect.signature(RandCTF).parameters.items()
        if name in ("defocus_range_um", "pixel_size_nm", "voltage_kv", "cs_mm", "amplitude_contrast", "abs_ctf")}


class ViewPipeline(Compose):
    """The ``Compose`` a view factory returns, which also knows how to make its views on a device.

    ``paper_views(...)``, ``cryo3d_views(...)`` and ``finetune_views(...)`` return one: per sample it
    is the usual MONAI pipeline (normalise, then :class:`MultiViewd`, or for ``finetune_views`` the
    one view in place of ``"image"``); :meth:`batched` builds the
    :class:`~cryomonai.transforms.batched.BatchedViews` twin from the same keyword arguments, and
    :meth:`normalisation` the loader's part when the views are made on the device.

    Args:
        transforms: the per-sample pipeline.
        factory: ``BatchedViews.from_paper_views`` or ``BatchedViews.from_cryo3d_views`` (``finetune_views`` too).
        options: all keyword arguments of the view factory.
    """

    def __init__(self, transforms: Sequence[Transform], factory, options: dict) -> None:
        super().__init__(list(transforms))
        self.factory, self.options = factory, dict(options)

    def batched(self) -> BatchedViews:
        """The same views, made from a whole batch on its device."""
        keys = self.options.get("keys", ("image",))
        keys = [keys] if isinstance(keys, str) else list(keys)
        if keys != ["image"] or self.options.get("keep_input") or self.options.get("view_keys") is not None:
            raise ConfigError(
                "augment_on_device", f"views of keys {keys} (view_keys/keep_input set) cannot be made on the device",
                "use the default keys, or set augment_on_device false")
        return self.factory(self.options)

    def normalisation(self) -> Compose:
        """What the data loader still does when the views are made on the device: normalise ``"image"``."""
        return eval_transform(("image",))


def _not_a_view_pipeline(views) -> ConfigError:
    return ConfigError(
        "augment_on_device",
        f"train#transforms is a {type(views).__name__}, not paper_views/cryo3d_views/finetune_views",
        "set augment_on_device false to run a custom views pipeline in the data loader")


def loader_transform(views: Transform, on_device: bool = False) -> Transform:
    """The data loader's transform for training: ``views`` itself, or only their normalisation when
    ``on_device`` (the bundle's ``augment_on_device``) moves the views to :func:`device_views`."""
    if not on_device:
        return views
    if not isinstance(views, ViewPipeline):
        raise _not_a_view_pipeline(views)
    return views.normalisation()


def device_views(views: Transform, on_device: bool = False) -> BatchedViews | None:
    """The batched twin of ``views`` when ``on_device``, else ``None`` (views made by the data loader)."""
    if not on_device:
        return None
    if not isinstance(views, ViewPipeline):
        raise _not_a_view_pipeline(views)
    return views.batched()


def _normalise(keys: KeysCollection, copy: bool = True) -> list[Transform]:
    """float32 tensors, then zero mean / unit std per volume (MONAI ``NormalizeIntensityd``).

    ``NormalizeIntensity`` writes into its input, and ``EnsureTyped`` hands a float32 tensor (or a
    tensor sharing a float32 numpy array's memory) through as it is: with ``copy`` the volume is
    cloned first, so a dataset's own arrays are never changed.
    """
    clone = [Lambdad(keys, torch.clone)] if copy else []
    return [EnsureTyped(keys, dtype=torch.float32), *clone, NormalizeIntensityd(keys, channel_wise=True)]


def eval_transform(keys: KeysCollection = ("image",)) -> Compose:
    """Normalisation only (zero mean, unit std per volume), for fine-tune validation and inference."""
    return Compose(_normalise(keys))


def paper_views(
    n_views: int = 2,
    keys: KeysCollection = ("image",),
    view_keys: Sequence[str] | None = None,
    crop_prob: float = 0.5,
    crop_scale: Sequence[float] = (0.5, 1.0),
    affine_prob: float = 0.5,
    max_rotation_deg: float = 45.0,
    max_translation: float = 0.1,
    scale_range: Sequence[float] = (0.9, 1.1),
    mode: str = "bilinear",
    keep_input: bool = False,
) -> Compose:
    """The paper's views (Gupta et al. 2022, §3.3): 2D transforms applied to every z-slice alike.

    Normalise, then per view: a random resized crop in (y, x) (``crop_prob`` 0.5, area fraction
    ``crop_scale`` 0.5–1, aspect 1, resized back; all z kept) and a random affine in (y, x)
    (``affine_prob`` 0.5; rotation ±``max_rotation_deg`` = ±45° about the beam axis z,
    translation up to ``max_translation`` = 10 % of H and W, isotropic scale ``scale_range``
    0.9–1.1), as torchvision's transforms did on (D, H, W) tensors.

    Example:
        >>> views = paper_views().set_random_state(0)
        >>> out = views({"image": torch.randn(1, 8, 16, 16), "label": 1})
        >>> sorted(out), tuple(out["view_1"].shape)
        (['label', 'view_0', 'view_1'], (1, 8, 16, 16))
    """
    options = dict(locals())
    view = Compose(
        [
            RandResizedCropd(keys, prob=crop_prob, scale=crop_scale, spatial_axes=(1, 2)),
            RandInPlaneAffined(keys, affine_prob, max_rotation_deg, max_translation, scale_range, mode, "zeros"),
        ]
    )
    return ViewPipeline([*_normalise(keys), MultiViewd(view, n_views, keys, view_keys, keep_input)],
                        BatchedViews.from_paper_views, options)


def _rotation(keys: KeysCollection, rotation: str, prob: float, beam_angle_deg, mode: str, pad: str) -> Transform:
    """The rotation stage of :func:`cryo3d_views`: about z (``"beam"``), uniform 3D (``"so3"``), or the
    axis-aligned 180° turns (``"d2"``; ``"d2h"`` with their mirror images)."""
    if rotation == "beam":
        return beam_rotation(keys, beam_angle_deg, prob, mode, pad)
    if rotation == "so3":
        return RandSO3Rotated(keys, prob, mode, pad)
    if rotation in ("d2", "d2h"):
        return RandWedgeTurnd(keys, prob, mirror=rotation == "d2h")
    raise ConfigError("cryo3d_views", f"rotation={rotation!r} is unknown", f"use one of {list(ROTATIONS)}")


def cryo3d_views(
    n_views: int = 2,
    rotation: str = "beam",
    keys: KeysCollection = ("image",),
    view_keys: Sequence[str] | None = None,
    rotation_prob: float = 1.0,
    beam_angle_deg: float | Sequence[float] = 180.0,
    shift_voxels: float = 0.0,
    tilt_range: Sequence[float] | None = (-60.0, 60.0),
    crop_prob: float = 0.5,
    crop_scale: Sequence[float] = (0.5, 1.0),
    lowpass_prob: float = 0.3,
    lowpass_cutoff: Sequence[float] = (0.5, 1.0),
    lowpass_width: float = 0.05,
    ctf_prob: float = 0.2,
    defocus_range_um: Sequence[float] = _CTF["defocus_range_um"],
    pixel_size_nm: float = _CTF["pixel_size_nm"],
    voltage_kv: float = _CTF["voltage_kv"],
    cs_mm: float = _CTF["cs_mm"],
    amplitude_contrast: float = _CTF["amplitude_contrast"],
    abs_ctf: bool = _CTF["abs_ctf"],
    noise_prob: float = 0.5,
    noise_factor_range: Sequence[float] = (1.0, 3.0),
    input_snr: float = 0.1,
    mode: str = "bilinear",
    padding_mode: str = "zeros",
    keep_input: bool = False,
) -> Compose:
    """Our cryo-ET views: true 3D augmentations that keep the missing wedge physical.

    Normalise, then per view, each step with its own probability (``*_prob``):

    1. low-pass at a cut-off ``~ U(lowpass_cutoff)`` × Nyquist (:class:`RandLowPass`);
    2. ``|CTF|`` of a defocus ``~ U(defocus_range_um)`` (:class:`RandCTF`, whose defaults the
       microscope arguments take; as :func:`cryomonai.physics.ctf.ctf_3d`);
    3. noise dividing the SNR by ``~ U(noise_factor_range)`` (:class:`RandSNRJitter`), shaped by
       the wedge of ``tilt_range`` so it turns with the data in step 4;
    4. rotation: ``"beam"`` about z by ``~ U(±beam_angle_deg)`` (or ``U(min, max)`` for a pair),
       ``"so3"`` uniform in 3D, or ``"d2"`` one of the 180° turns about z, y, x or none
       (:class:`RandWedgeTurn`: exact, the wedge stays; ``"d2h"`` with their mirror images); then, if ``shift_voxels`` > 0, a shift ``~ U(±shift_voxels)``
       voxels along each axis (:class:`RandShift`);
    5. a 3D random resized crop (volume fraction ``crop_scale``; isotropic, so wedge angles stay);
    6. for ``"so3"``, re-impose the wedge of ``tilt_range`` (``None``: data without a wedge —
       white noise, nothing re-imposed);
    7. normalise again (zero mean, unit std).

    Example:
        >>> views = cryo3d_views(rotation="so3").set_random_state(0)
        >>> out = views({"image": torch.randn(1, 16, 16, 16), "label": 2})
        >>> sorted(out), out["view_0"].dtype
        (['label', 'view_0', 'view_1'], torch.float32)
    """
    options = dict(locals())
    view = _cryo3d_view(options)
    return ViewPipeline([*_normalise(keys), MultiViewd(view, n_views, keys, view_keys, keep_input)],
                        BatchedViews.from_cryo3d_views, options)


def _cryo3d_view(o: Mapping[str, Any]) -> Compose:
    """Steps 1–7 of one view of :func:`cryo3d_views` on ``o["keys"]``; ``o`` holds all its arguments."""
    keys = o["keys"]
    view = [
        RandLowPassd(keys, o["lowpass_prob"], o["lowpass_cutoff"], o["lowpass_width"]),
        RandCTFd(keys, o["ctf_prob"], **{name: o[name] for name in _CTF}),
        RandSNRJitterd(keys, o["noise_prob"], o["noise_factor_range"], o["input_snr"], o["tilt_range"]),
        _rotation(keys, o["rotation"], o["rotation_prob"], o["beam_angle_deg"], o["mode"], o["padding_mode"]),
    ]
    if o["shift_voxels"] != 0:  # only then: without a shift the views draw exactly what they always drew
        view.append(RandShiftd(keys, 1.0, o["shift_voxels"], o["mode"], o["padding_mode"]))
    view.append(RandResizedCropd(keys, prob=o["crop_prob"], scale=o["crop_scale"], spatial_axes=(0, 1, 2)))
    if o["rotation"] == "so3" and o["tilt_range"] is not None:
        view.append(ImposeMissingWedged(keys, o["tilt_range"]))
    # no copy: a view is a new tensor, or (no step fired) the normalised input, which it leaves as it is
    return Compose(view + _normalise(keys, copy=False))


#: arguments of cryo3d_views that make no sense for one view in place of the input
_MULTI_VIEW_ONLY = ("n_views", "view_keys", "keep_input")


def finetune_views(
    rotation: str = "so3",
    shift_voxels: float = 1.0,
    tilt_range: Sequence[float] | None = (-60.0, 60.0),
    pixel_size_nm: float = _CTF["pixel_size_nm"],
    crop_prob: float = 0.0,
    noise_prob: float = 0.0,
    lowpass_prob: float = 0.0,
    ctf_prob: float = 0.0,
    keys: KeysCollection = ("image",),
    **view_options: Any,
) -> ViewPipeline:
    """Augmentation for supervised fine-tuning: one view of :func:`cryo3d_views`'s kind in place of ``"image"``.

    Normalise, then one view (the steps of :func:`cryo3d_views`, the same code): a rotation
    (``"so3"`` uniform in 3D with the missing wedge of ``tilt_range`` re-imposed afterwards,
    ``"beam"`` about z, or ``"d2"`` / ``"d2h"`` the axis-aligned turns, exact), a shift ``~ U(±shift_voxels)`` voxels along each axis (``0``: none), the
    optional crop / noise / low-pass / CTF jitter (probabilities 0 by default), normalise again.
    The view replaces ``keys``; every other key (``"label"``, ``"name"`` …) passes through
    untouched. ``view_options`` are any other keyword arguments of :func:`cryo3d_views`
    (``beam_angle_deg``, ``crop_scale``, ``noise_factor_range``, ``defocus_range_um``, ``mode`` …),
    with its defaults. ``pixel_size_nm`` (nm per voxel) matters for the CTF only. ``.batched()``
    gives the twin made on the device (a :class:`~cryomonai.transforms.BatchedViews` of one view).

    Example:
        >>> aug = finetune_views().set_random_state(0)
        >>> out = aug({"image": torch.randn(1, 16, 16, 16), "label": 2})
        >>> sorted(out), tuple(out["image"].shape), out["label"]
        (['image', 'label'], (1, 16, 16, 16), 2)

    Raises:
        ConfigError: a keyword that is not one of :func:`cryo3d_views`'s, or one of its multi-view ones.
    """
    explicit = {k: v for k, v in locals().items() if k != "view_options"}
    known = {name: p.default for name, p in inspect.signature(cryo3d_views).parameters.items()}
    unknown = sorted(k for k in view_options if k not in known or k in _MULTI_VIEW_ONLY)
    if unknown:
        allowed = sorted(set(known) - set(_MULTI_VIEW_ONLY))
        raise ConfigError("finetune_views", f"unknown keyword(s) {unknown}",
                          f"use keywords of cryo3d_views: {allowed}")
    options = {**known, **view_options, **explicit, "n_views": 1}
    return ViewPipeline([*_normalise(keys), _cryo3d_view(options)], BatchedViews.from_cryo3d_views, options)
