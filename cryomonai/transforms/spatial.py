"""Spatial augmentations of (C, D, H, W) subtomograms (spatial axes z, y, x; beam along z).

* :class:`RandResizedCrop` — a random crop of a fraction of the box (aspect kept), resized back;
  ``spatial_axes=(1, 2)`` crops in the (y, x) plane only, keeping every z-slice (the paper's
  torchvision ``RandomResizedCrop`` applied to a (D, H, W) tensor), ``(0, 1, 2)`` crops in 3D.
* :class:`RandInPlaneAffine` — the paper's ``RandomAffine``: rotation about the beam axis z,
  translation and isotropic scaling in the (y, x) plane, the same for every z-slice.
* :func:`beam_rotation` — MONAI ``RandRotated`` about z (keeps a physical missing wedge).
* :class:`RandSO3Rotate` — a uniformly random 3D rotation (re-impose the wedge afterwards with
  :class:`cryomonai.transforms.ImposeMissingWedge`: rotating moves it).
* :class:`RandWedgeTurn` — one of the axis-aligned 180° turns (D2), or with ``mirror`` also their
  mirror images: exact voxel permutations that leave an axis-aligned missing wedge where it is.
* :class:`RandShift` — a random 3D translation of up to a few voxels along each axis (a phase
  ramp in Fourier space: the missing wedge stays where it is).

MONAI's axis naming for a (C, z, y, x) array (worked out from ``monai.transforms.utils.create_rotate``
and checked in ``tests/test_transforms.py``): ``rotate_params[0]`` ("about x" in MONAI's words)
rotates the plane of spatial dims 1 and 2, i.e. **(y, x), about our z**; ``[1]`` rotates (z, x)
and ``[2]`` rotates (z, y). ``translate_params`` and ``scale_params`` follow array order
``(z, y, x)``. A rotation by +90° with ``rotate_params=(pi/2, 0, 0)`` equals
``torch.rot90(vol, k=-1, dims=(-2, -1))``. MONAI's affine maps output to input coordinates, so a
shift ``t`` moves the content by ``-t`` and a scale ``s`` shrinks it by ``s``; all ranges here are
symmetric, so only the distribution matters.

Reference: Gupta et al. 2022, "Self-supervised learning for macromolecular structure
classification based on cryo-electron tomograms", Frontiers in Physiology, §3.3.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import Affine, RandomizableTransform, RandRotated, Resize, SpatialCrop
from monai.utils.enums import TransformBackends
from scipy.spatial.transform import Rotation

from cryomonai.errors import ConfigError
from cryomonai.transforms.base import RandArrayd, RandVolumeTransform, check_volume

__all__ = [
    "ROTATIONS",
    "RandResizedCrop",
    "RandResizedCropd",
    "RandInPlaneAffine",
    "RandInPlaneAffined",
    "RandSO3Rotate",
    "RandSO3Rotated",
    "RandShift",
    "RandShiftd",
    "RandWedgeTurn",
    "RandWedgeTurnd",
    "beam_rotation",
]

#: the rotations of the views (``rotation`` of :func:`~cryomonai.transforms.cryo3d_views`,
#: :func:`~cryomonai.transforms.finetune_views` and :class:`~cryomonai.transforms.BatchedViews`)
ROTATIONS = ("beam", "so3", "d2", "d2h")


class RandResizedCrop(RandomizableTransform):
    """Crop a random box holding a fraction ``scale`` of the area/volume, then resize it back.

    The crop keeps the box's aspect ratio (the paper's ``ratio=(1, 1)`` on cubic boxes): with
    ``n = len(spatial_axes)`` cropped axes each side is ``round(size · f^(1/n))``, ``f ~ U(scale)``,
    at a uniformly random integer position; axes not in ``spatial_axes`` are kept whole. As
    torchvision's ``RandomResizedCrop`` (used by the paper on (D, H, W) tensors, so every z-slice
    gets the same 2D crop) the crop is then resized back to the input size (``mode``).

    Args:
        prob: probability of cropping (paper: 0.5).
        scale: range of the kept fraction of the area (2D) or volume (3D) (paper: 0.5–1).
        spatial_axes: cropped spatial axes of (z, y, x): ``(1, 2)`` in-plane (paper), ``(0, 1, 2)`` 3D.
        mode: interpolation of the resize (``"trilinear"``; along an uncropped axis it is exact).

    Example:
        >>> crop = RandResizedCrop(prob=1.0, spatial_axes=(1, 2)).set_random_state(0)
        >>> tuple(crop(torch.rand(1, 4, 16, 16)).shape)
        (1, 4, 16, 16)
    """

    backend = [TransformBackends.TORCH]

    def __init__(
        self,
        prob: float = 0.5,
        scale: Sequence[float] = (0.5, 1.0),
        spatial_axes: Sequence[int] = (0, 1, 2),
        mode: str = "trilinear",
    ) -> None:
        super().__init__(prob)
        self.scale = (float(scale[0]), float(scale[1]))
        self.spatial_axes = tuple(int(a) for a in spatial_axes)
        self.mode = mode
        self._box: tuple[list[int], list[int]] | None = None

    def randomize(self, data: Any = None) -> None:
        """Draw the crop box for ``data``, a (C, D, H, W) volume (its shape is needed)."""
        super().randomize(None)
        if not self._do_transform:
            return
        shape = check_volume(data, type(self).__name__).shape[1:]
        frac = self.R.uniform(*self.scale) ** (1.0 / len(self.spatial_axes))
        start, end = [0, 0, 0], list(shape)
        for ax in self.spatial_axes:
            size = min(shape[ax], max(1, int(round(shape[ax] * frac))))
            start[ax] = int(self.R.randint(0, shape[ax] - size + 1))
            end[ax] = start[ax] + size
        self._box = (start, end)

    def __call__(self, img: Any, randomize: bool = True) -> torch.Tensor:
        """Crop and resize a (C, D, H, W) volume; returns the same shape, float."""
        img = check_volume(img, type(self).__name__)
        if randomize:
            self.randomize(img)
        if not self._do_transform or self._box is None:
            return img
        out = SpatialCrop(roi_start=self._box[0], roi_end=self._box[1])(img)
        return Resize(spatial_size=tuple(img.shape[1:]), mode=self.mode)(out)


class RandInPlaneAffine(RandomizableTransform):
    """The paper's random affine: rotate about z, translate and scale in (y, x), same for every z.

    Draws an angle ``θ ~ U(−max_rotation_deg, max_rotation_deg)``, shifts ``(ty, tx) ~
    U(−max_translation, max_translation) · (H, W)`` voxels and one isotropic in-plane scale
    ``s ~ U(scale_range)`` (as torchvision's ``RandomAffine(degrees=45, translate=(0.1, 0.1),
    scale=(0.9, 1.1))``, which draws one scale factor, not one per axis as MONAI's
    ``RandAffine``), then warps with MONAI's :class:`~monai.transforms.Affine` using
    ``rotate_params=(θ, 0, 0)``, ``translate_params=(0, ty, tx)``, ``scale_params=(1, s, s)``:
    nothing moves along z. torchvision's default interpolation was nearest; ``mode`` sets it.

    Args:
        prob: probability of the affine (paper: 0.5).
        max_rotation_deg: maximum |angle| of the rotation about z, degrees (paper: 45).
        max_translation: maximum |shift| as a fraction of H and W (paper: a "random fraction"; 0.1).
        scale_range: range of the isotropic in-plane scale factor.
        mode: interpolation, ``"bilinear"`` or ``"nearest"``.
        padding_mode: outside the box: ``"zeros"`` (torchvision's fill 0), ``"border"``, ``"reflection"``.
    """

    backend = [TransformBackends.TORCH]

    def __init__(
        self,
        prob: float = 0.5,
        max_rotation_deg: float = 45.0,
        max_translation: float = 0.1,
        scale_range: Sequence[float] = (0.9, 1.1),
        mode: str = "bilinear",
        padding_mode: str = "zeros",
    ) -> None:
        super().__init__(prob)
        self.max_rotation_deg = float(max_rotation_deg)
        self.max_translation = float(max_translation)
        self.scale_range = (float(scale_range[0]), float(scale_range[1]))
        self.mode = mode
        self.padding_mode = padding_mode
        self.angle_deg = 0.0
        self.shift_yx = (0.0, 0.0)
        self.scale = 1.0

    def randomize(self, data: Any = None) -> None:
        """Draw angle, shift (needs ``data``'s (H, W)) and scale."""
        super().randomize(None)
        if not self._do_transform:
            return
        h, w = check_volume(data, type(self).__name__).shape[-2:]
        self.angle_deg = float(self.R.uniform(-self.max_rotation_deg, self.max_rotation_deg))
        t = self.max_translation
        self.shift_yx = (float(self.R.uniform(-t, t) * h), float(self.R.uniform(-t, t) * w))
        self.scale = float(self.R.uniform(*self.scale_range))

    def __call__(self, img: Any, randomize: bool = True) -> torch.Tensor:
        """Warp a (C, D, H, W) volume slice-wise in (y, x); returns the same shape, float32."""
        img = check_volume(img, type(self).__name__)
        if randomize:
            self.randomize(img)
        if not self._do_transform:
            return img
        affine = Affine(
            rotate_params=(math.radians(self.angle_deg), 0.0, 0.0),  # (y, x) plane = about z
            translate_params=(0.0, *self.shift_yx),  # (z, y, x) voxels
            scale_params=(1.0, self.scale, self.scale),
            mode=self.mode,
            padding_mode=self.padding_mode,
            device=img.device,
            image_only=True,
        )
        return affine(img)


class _RandAffineWarp(RandVolumeTransform):
    """A random warp of a (C, D, H, W) volume with MONAI's :class:`~monai.transforms.Affine`.

    Subclasses draw their parameters in ``randomize`` and return the drawn map as :meth:`affine`:
    a 4×4 matrix from output to input voxel coordinates (z, y, x) about the box centre.
    """

    def __init__(self, prob: float = 1.0, mode: str = "bilinear", padding_mode: str = "zeros") -> None:
        super().__init__(prob)
        self.mode = mode
        self.padding_mode = padding_mode

    def affine(self) -> torch.Tensor:
        """The drawn map, ``(4, 4)`` float64."""
        raise NotImplementedError

    def apply(self, img: torch.Tensor) -> torch.Tensor:
        """Warp a (C, D, H, W) volume; returns the same shape, float32."""
        warp = Affine(affine=self.affine(), mode=self.mode, padding_mode=self.padding_mode, device=img.device,
                      image_only=True)
        return warp(img)


class RandSO3Rotate(_RandAffineWarp):
    """Rotate a (C, D, H, W) volume by a uniformly random 3D rotation about the box centre.

    The rotation is drawn uniformly on SO(3) (Haar measure: a normalised 4-D Gaussian quaternion,
    converted by ``scipy.spatial.transform.Rotation``) — unlike MONAI's ``RandRotate``, whose
    uniform Euler angles are not uniform on SO(3). The drawn 3×3 matrix (acting on (z, y, x)
    coordinates) is kept in ``self.matrix``. Rotating also rotates the missing wedge; follow with
    :class:`cryomonai.transforms.ImposeMissingWedge` to put it back where the microscope has it.

    Args:
        prob: probability of rotating.
        mode: interpolation, ``"bilinear"`` or ``"nearest"``.
        padding_mode: outside the box: ``"zeros"``, ``"border"`` or ``"reflection"``.
    """

    def __init__(self, prob: float = 1.0, mode: str = "bilinear", padding_mode: str = "zeros") -> None:
        super().__init__(prob, mode, padding_mode)
        self.matrix = np.eye(3)

    def randomize(self, data: Any = None) -> None:
        """Draw the rotation matrix (``data`` is not used)."""
        super().randomize(None)
        if self._do_transform:
            self.matrix = Rotation.from_quat(self.R.normal(size=4)).as_matrix()

    def affine(self) -> torch.Tensor:
        """The drawn rotation about the box centre, ``(4, 4)``."""
        m = torch.eye(4, dtype=torch.float64)
        m[:3, :3] = torch.as_tensor(self.matrix)
        return m


class RandWedgeTurn(RandVolumeTransform):
    """Turn a (C, D, H, W) volume by 180° about z, y or x (or not), each with probability ¼ (the group D2).

    A 180° turn about an axis negates the other two coordinates, in real and in Fourier space. An
    axis-aligned missing wedge (tilt axis x or y, beam z) is symmetric under each such negation, so it
    stays where the microscope put it: no wedge to re-impose, unlike :class:`RandSO3Rotate`. And the
    turn is a permutation of voxels (``torch.flip`` of two axes; an even or odd box alike): no
    interpolation smooths the volume, no corner comes in from outside the box. The training views
    then have exactly the statistics of the data. With ``mirror=True`` the element is drawn from the
    eight of D2h (the turns and their mirror images, each axis flipped with probability ½), which
    also changes the handedness of the particle. The flipped spatial axes are kept in ``self.axes``.

    Args:
        prob: probability of drawing a group element (the identity is one of them).
        mirror: also draw the mirror images (D2h, 8 elements), not only the turns (D2, 4).

    Example:
        >>> turn = RandWedgeTurn().set_random_state(0)
        >>> vol = torch.rand(1, 4, 6, 8)
        >>> out = turn(vol)
        >>> bool(torch.equal(out, vol.flip([a + 1 for a in turn.axes]))), len(turn.axes) in (0, 2)
        (True, True)
    """

    #: the spatial axes each D2 element flips: the identity, and the turns about x, y, z
    TURNS = ((), (0, 1), (0, 2), (1, 2))

    def __init__(self, prob: float = 1.0, mirror: bool = False) -> None:
        super().__init__(prob)
        self.mirror = bool(mirror)
        self.axes: tuple[int, ...] = ()

    def randomize(self, data: Any = None) -> None:
        """Draw the group element (``data`` is not used)."""
        super().randomize(None)
        if not self._do_transform:
            return
        if self.mirror:
            self.axes = tuple(int(a) for a in np.flatnonzero(self.R.random_sample(3) < 0.5))
        else:
            self.axes = self.TURNS[int(self.R.randint(4))]

    def apply(self, img: torch.Tensor) -> torch.Tensor:
        """Flip the drawn spatial axes (a new tensor; the input is left as it is)."""
        return img.flip([a + 1 for a in self.axes]) if self.axes else img.clone()


class RandShift(_RandAffineWarp):
    """Translate a (C, D, H, W) volume by a random shift of up to ``max_shift`` voxels along each axis.

    Draws ``(tz, ty, tx) ~ U(−max_shift, max_shift)`` voxels, each axis independently, and warps
    with MONAI's :class:`~monai.transforms.Affine` (as ``translate_params=(tz, ty, tx)``: output to
    input, so the content moves by ``−t``; the range is symmetric). A fractional shift interpolates
    (``mode``); what comes in from outside the box is ``padding_mode``. A translation multiplies
    the Fourier transform by a phase only, so a missing wedge stays where it was (up to the box
    edge): no re-imposition needed. The drawn shift is kept in ``self.shift`` (voxels, z, y, x).

    Args:
        prob: probability of shifting.
        max_shift: the largest |shift| along each axis, voxels (e.g. 1.0 for picks within ±1 voxel).
        mode: interpolation, ``"bilinear"`` or ``"nearest"``.
        padding_mode: outside the box: ``"zeros"``, ``"border"`` or ``"reflection"``.

    Example:
        >>> shift = RandShift(prob=1.0, max_shift=1.0).set_random_state(0)
        >>> out = shift(torch.rand(1, 8, 8, 8))
        >>> tuple(out.shape), all(abs(t) <= 1.0 for t in shift.shift)
        ((1, 8, 8, 8), True)
    """

    def __init__(self, prob: float = 1.0, max_shift: float = 1.0, mode: str = "bilinear",
                 padding_mode: str = "zeros") -> None:
        super().__init__(prob, mode, padding_mode)
        if max_shift < 0:
            raise ConfigError("RandShift", f"max_shift={max_shift} is negative",
                              "give the largest |shift| in voxels, >= 0")
        self.max_shift = float(max_shift)
        self.shift = (0.0, 0.0, 0.0)

    def randomize(self, data: Any = None) -> None:
        """Draw the shift ``(tz, ty, tx)`` (``data`` is not used)."""
        super().randomize(None)
        if self._do_transform:
            self.shift = tuple(float(t) for t in self.R.uniform(-self.max_shift, self.max_shift, size=3))

    def affine(self) -> torch.Tensor:
        """The drawn translation, ``(4, 4)``."""
        m = torch.eye(4, dtype=torch.float64)
        m[:3, 3] = torch.tensor(self.shift, dtype=torch.float64)
        return m


def beam_rotation(
    keys: KeysCollection,
    angle_deg: float | Sequence[float] = 180.0,
    prob: float = 1.0,
    mode: str = "bilinear",
    padding_mode: str = "zeros",
    allow_missing_keys: bool = False,
) -> RandRotated:
    """MONAI ``RandRotated`` about the beam axis z only.

    A rotation about z keeps a missing wedge a physical one (its tilt axis turns within the
    (y, x) plane, as for a tomogram recorded at another in-plane angle), so no re-imposition is
    needed. MONAI's ``range_x`` is the (y, x) plane of a (C, z, y, x) volume (module docstring).
    The transform is invertible (``RandRotated.inverse``).

    Args:
        keys: keys of the (C, D, H, W) volumes, rotated alike.
        angle_deg: a number ``a`` for angles ``~ U(−a, a)`` degrees, or a ``(min, max)`` pair.
        prob: probability of rotating.
        mode, padding_mode: interpolation and outside-the-box values of ``RandRotated``.
        allow_missing_keys: don't raise if a key is missing.
    """
    lo, hi = (-float(angle_deg), float(angle_deg)) if np.isscalar(angle_deg) else angle_deg  # type: ignore[misc]
    return RandRotated(
        keys,
        range_x=(math.radians(lo), math.radians(hi)),
        range_y=0.0,
        range_z=0.0,
        prob=prob,
        keep_size=True,
        mode=mode,
        padding_mode=padding_mode,
        allow_missing_keys=allow_missing_keys,
    )


class RandResizedCropd(RandArrayd, array=RandResizedCrop):
    """Dictionary twin of :class:`RandResizedCrop` (one crop box for all ``keys``)."""


class RandInPlaneAffined(RandArrayd, array=RandInPlaneAffine):
    """Dictionary twin of :class:`RandInPlaneAffine` (one affine for all ``keys``)."""


class RandSO3Rotated(RandArrayd, array=RandSO3Rotate):
    """Dictionary twin of :class:`RandSO3Rotate` (one rotation for all ``keys``)."""


class RandShiftd(RandArrayd, array=RandShift):
    """Dictionary twin of :class:`RandShift` (one shift for all ``keys``)."""


class RandWedgeTurnd(RandArrayd, array=RandWedgeTurn):
    """Dictionary twin of :class:`RandWedgeTurn` (one group element for all ``keys``)."""
