"""``MultiViewd``: several independently augmented views of one sample (MoCo's ``TwoCropsTransform``).

A MONAI dictionary transform draws one random state for all its keys, so
``RandAffined(keys=["view_0", "view_1"])`` would make identical views. Views come instead from
calling one pipeline once per view, each call drawing fresh randomness.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import numpy as np
from monai.config import KeysCollection
from monai.transforms import MapTransform, Randomizable
from monai.utils.misc import MAX_SEED

from cryomonai.errors import ConfigError

__all__ = ["MultiViewd"]


class MultiViewd(Randomizable, MapTransform):
    """Run ``transform`` ``n_views`` times on ``keys`` and store the results as ``view_keys``.

    Other keys (``label``, metadata …) pass through untouched. With one key, view ``i`` is stored as
    ``view_keys[i]``; with several keys as ``f"{view_keys[i]}_{key}"``. ``set_random_state`` seeds
    the inner pipeline (``Compose.set_random_state`` seeds each of its transforms in turn), so a
    seed reproduces every view.

    Args:
        transform: a dictionary pipeline acting on ``keys`` (e.g. a MONAI ``Compose``).
        n_views: number of views (2 for SimCLR/MoCo; SwAV's multi-crop uses more).
        keys: the input keys, each a (C, D, H, W) volume.
        view_keys: names of the views; default ``("view_0", …, f"view_{n_views-1}")``.
        keep_input: keep the un-augmented ``keys`` in the output (default: drop them, as MoCo).
        allow_missing_keys: don't raise if a key is missing.

    Example:
        >>> import torch
        >>> from monai.transforms import RandGaussianNoised
        >>> views = MultiViewd(RandGaussianNoised("image", prob=1.0), n_views=2).set_random_state(0)
        >>> out = views({"image": torch.zeros(1, 4, 4, 4), "label": 3})
        >>> sorted(out), bool((out["view_0"] != out["view_1"]).any())
        (['label', 'view_0', 'view_1'], True)
    """

    def __init__(
        self,
        transform: Callable[[dict], dict],
        n_views: int = 2,
        keys: KeysCollection = ("image",),
        view_keys: Sequence[str] | None = None,
        keep_input: bool = False,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        self.transform = transform
        self.view_keys = tuple(view_keys) if view_keys is not None else tuple(f"view_{i}" for i in range(n_views))
        if n_views < 1 or len(self.view_keys) != n_views:
            raise ConfigError(
                "MultiViewd", f"n_views={n_views} but view_keys={self.view_keys}", "give one view key per view"
            )
        self.keep_input = keep_input

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None) -> MultiViewd:
        """Seed this transform and, from it, the inner pipeline."""
        super().set_random_state(seed, state)
        if isinstance(self.transform, Randomizable):
            self.transform.set_random_state(seed=int(self.R.randint(MAX_SEED, dtype="uint32")))
        return self

    def randomize(self, data: Any = None) -> None:
        """Nothing to draw here: each view's call of the inner pipeline draws its own."""

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        keys = list(self.key_iterator(d))
        for view_key in self.view_keys:
            out = self.transform({key: d[key] for key in keys})
            for key in keys:
                d[view_key if len(self.keys) == 1 else f"{view_key}_{key}"] = out[key]
        if not self.keep_input:
            for key in keys:
                del d[key]
        return d
