"""Augmentations of cryo-ET subtomograms as MONAI transforms, and the views for self-supervision.

Axis convention
---------------
A sample is a data dict whose ``"image"`` is a **(C, D, H, W) = (1, z, y, x)** float tensor:
channel first, then the spatial axes in MRC order. The electron **beam is along z**; the tilt
axis of the tilt series is **y**, so the **missing wedge** is the set of Fourier samples
``(kz, ky, kx)`` with ``|atan2(kz, kx)|`` beyond the tilt range, for every ``ky``
(:func:`cryomonai.physics.wedge.missing_wedge_mask`). A rotation about z keeps a wedge
physical (its tilt axis turns within the (y, x) plane); any other rotation moves it where no
microscope puts it, so it is re-imposed afterwards. In MONAI's affine parameters for such an
array, ``rotate_params[0]`` is the rotation about z (the (y, x) plane) and translations/scales
are in array order ``(z, y, x)`` (see :mod:`cryomonai.transforms.spatial`).

Modules
-------
* :mod:`~cryomonai.transforms.spatial` — resized crops (in-plane or 3D), the paper's in-plane
  affine, rotations about the beam axis, uniform 3D rotations and small 3D shifts.
* :mod:`~cryomonai.transforms.wedge` — re-impose the missing wedge.
* :mod:`~cryomonai.transforms.intensity` — SNR (noise), low-pass and CTF jitter.
* :mod:`~cryomonai.transforms.views` — :class:`MultiViewd`, n independently augmented views.
* :mod:`~cryomonai.transforms.presets` — :func:`paper_views`, :func:`cryo3d_views`,
  :func:`finetune_views` (one augmented view for supervised fine-tuning), :func:`eval_transform`,
  each one ``_target_`` for a bundle.
* :mod:`~cryomonai.transforms.batched` — :class:`BatchedViews`: the same views made from a whole
  batch on its device (GPU), the bundle's ``augment_on_device``.

Every random transform is an array ``RandomizableTransform`` drawing from its own ``self.R`` with a
``…d`` dictionary twin; ``set_random_state`` on a pipeline reproduces all its views.
"""

from cryomonai.transforms.base import RandArrayd, check_volume
from cryomonai.transforms.batched import BatchedViews, random_rotations
from cryomonai.transforms.intensity import RandCTF, RandCTFd, RandLowPass, RandLowPassd, RandSNRJitter, RandSNRJitterd
from cryomonai.transforms.presets import (
    ViewPipeline,
    cryo3d_views,
    device_views,
    eval_transform,
    finetune_views,
    loader_transform,
    paper_views,
)
from cryomonai.transforms.spatial import (
    RandInPlaneAffine,
    RandInPlaneAffined,
    RandResizedCrop,
    RandResizedCropd,
    RandShift,
    RandShiftd,
    RandSO3Rotate,
    RandSO3Rotated,
    RandWedgeTurn,
    RandWedgeTurnd,
    beam_rotation,
)
from cryomonai.transforms.views import MultiViewd
from cryomonai.transforms.wedge import ImposeMissingWedge, ImposeMissingWedged, wedge_filter

__all__ = [
    "BatchedViews",
    "ImposeMissingWedge",
    "ImposeMissingWedged",
    "MultiViewd",
    "RandArrayd",
    "RandCTF",
    "RandCTFd",
    "RandInPlaneAffine",
    "RandInPlaneAffined",
    "RandLowPass",
    "RandLowPassd",
    "RandResizedCrop",
    "RandResizedCropd",
    "RandSNRJitter",
    "RandSNRJitterd",
    "RandSO3Rotate",
    "RandSO3Rotated",
    "RandShift",
    "RandShiftd",
    "RandWedgeTurn",
    "RandWedgeTurnd",
    "ViewPipeline",
    "beam_rotation",
    "check_volume",
    "cryo3d_views",
    "device_views",
    "eval_transform",
    "finetune_views",
    "loader_transform",
    "paper_views",
    "random_rotations",
    "wedge_filter",
]
