"""Re-impose the missing wedge on a (C, D, H, W) volume (spatial z, y, x; beam z; tilt axis y).

A single-axis tilt series measures only the Fourier samples within the tilt range
(:func:`cryomonai.physics.wedge.missing_wedge_mask`); every real subtomogram lacks the rest. A
3D rotation that is not about the beam axis moves that empty wedge somewhere a microscope never
leaves it, so after :class:`cryomonai.transforms.RandSO3Rotate` we zero the wedge again:
``out = F⁻¹[F(vol) · W]``. Applying it twice changes nothing (W is 0/1).
"""

from __future__ import annotations

import functools
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform
from monai.utils import convert_to_dst_type, convert_to_tensor
from monai.utils.enums import TransformBackends

from cryomonai.physics.fourier import apply_fourier_filter
from cryomonai.physics.wedge import missing_wedge_mask
from cryomonai.transforms.base import check_volume

__all__ = ["wedge_filter", "ImposeMissingWedge", "ImposeMissingWedged"]


@functools.lru_cache(maxsize=8)
def wedge_filter(shape: tuple[int, int, int], tilt_range: tuple[float, float], device: torch.device) -> torch.Tensor:
    """The missing-wedge mask of a (D, H, W) box as a float32 Fourier filter (fftn layout), cached."""
    return missing_wedge_mask(shape, tilt_range, device).float()


class ImposeMissingWedge(Transform):
    """Zero the Fourier samples a single-axis tilt series over ``tilt_range`` (about y) misses.

    Args:
        tilt_range: (min, max) tilt angles in degrees (e.g. ``(-60, 60)``).

    Example:
        >>> vol = torch.randn(1, 16, 16, 16)
        >>> out = ImposeMissingWedge((-60.0, 60.0))(vol)
        >>> w = missing_wedge_mask((16, 16, 16), (-60.0, 60.0))
        >>> bool(torch.fft.fftn(out[0])[~w].abs().max() < 1e-3)
        True
    """

    backend = [TransformBackends.TORCH]

    def __init__(self, tilt_range: Sequence[float] = (-60.0, 60.0)) -> None:
        self.tilt_range = (float(tilt_range[0]), float(tilt_range[1]))

    def __call__(self, img: Any) -> torch.Tensor:
        """Filter a (C, D, H, W) volume; returns the same shape and type."""
        img = check_volume(img, type(self).__name__)
        t = convert_to_tensor(img, track_meta=False)
        filt = wedge_filter(tuple(t.shape[1:]), self.tilt_range, t.device)
        out = apply_fourier_filter(t, filt)
        return convert_to_dst_type(out, img)[0]


class ImposeMissingWedged(MapTransform):
    """Dictionary twin of :class:`ImposeMissingWedge`."""

    backend = ImposeMissingWedge.backend

    def __init__(
        self, keys: KeysCollection, tilt_range: Sequence[float] = (-60.0, 60.0), allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.wedge = ImposeMissingWedge(tilt_range)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.wedge(d[key])
        return d
