"""The dictionary twin shared by all our random array transforms, their common call, and the input check.

MONAI's own dictionary transforms keep a second random state in the ``…d`` class (for ``prob``)
next to the array transform's; ours keep exactly one: the array transform draws everything
(whether to act, and its parameters) from its ``self.R``, once per call, and the twin applies that
one draw to every key (so an image and its mask move together). Views for self-supervised learning
come from calling a pipeline once per view (:class:`cryomonai.transforms.MultiViewd`), never from
listing view keys in one dictionary transform.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import get_track_meta
from monai.transforms import MapTransform, Randomizable, RandomizableTransform
from monai.utils import convert_to_tensor
from monai.utils.enums import TransformBackends

from cryomonai.errors import CryoDataError

__all__ = ["check_volume", "RandVolumeTransform", "RandArrayd"]


def check_volume(img: Any, where: str) -> torch.Tensor:
    """Return ``img`` as a float tensor of shape (C, D, H, W) (channel first, spatial z, y, x).

    Like MONAI's own transforms, returns a ``MetaTensor`` (metadata kept) while
    ``monai.data.get_track_meta()`` is on (the default), so a batch never mixes tensor types.
    Raises :class:`CryoDataError` for anything that is not a 4-D real volume.
    """
    t = convert_to_tensor(img, track_meta=get_track_meta())
    if t.ndim != 4 or t.is_complex():
        raise CryoDataError(
            where,
            f"expected a real (C, D, H, W) volume (channel first, spatial z, y, x), got shape {tuple(t.shape)}",
            "add EnsureChannelFirstd after loading so each subtomogram is (1, D, H, W)",
        )
    return t if t.is_floating_point() else t.float()


class RandVolumeTransform(RandomizableTransform):
    """A random array transform of (C, D, H, W) volumes: check the input, draw, then :meth:`apply` or not.

    Subclasses draw everything (the coin of ``prob`` included, ``super().randomize(None)``) in
    ``randomize``, which must not need the volume, and transform in :meth:`apply`.
    """

    backend = [TransformBackends.TORCH]

    def apply(self, img: torch.Tensor) -> torch.Tensor:
        """Transform the checked volume with the drawn parameters."""
        raise NotImplementedError

    def __call__(self, img: Any, randomize: bool = True) -> torch.Tensor:
        """Transform a (C, D, H, W) volume (or return it as it is if the coin said no); same shape."""
        img = check_volume(img, type(self).__name__)
        if randomize:
            self.randomize()
        return self.apply(img) if self._do_transform else img


class RandArrayd(Randomizable, MapTransform):
    """Dictionary twin of a random array transform: one draw per call, applied to every key.

    Subclasses only build the array transform in ``__init__`` (so their keyword arguments are the
    bundle's JSON keys) and pass it here.

    Args:
        keys: keys of the (C, D, H, W) volumes to transform with the same random draw.
        transform: a ``RandomizableTransform`` with ``randomize(img)`` and
            ``__call__(img, randomize=...)``; it holds the probability and the random state.
        allow_missing_keys: don't raise if a key is missing.
    """

    backend = [TransformBackends.TORCH]

    def __init__(self, keys: KeysCollection, transform: RandomizableTransform, allow_missing_keys: bool = False):
        MapTransform.__init__(self, keys, allow_missing_keys)
        self.transform = transform

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None) -> RandArrayd:
        """Seed this twin and the array transform it wraps (the one that draws)."""
        super().set_random_state(seed, state)
        self.transform.set_random_state(seed, state)
        return self

    def randomize(self, data: Any = None) -> None:
        """Draw the array transform's parameters for ``data`` (the first key's volume)."""
        self.transform.randomize(data)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        first = self.first_key(d)
        if first == ():
            return d
        self.randomize(d[first])
        for key in self.key_iterator(d):
            d[key] = self.transform(d[key], randomize=False)
        return d
