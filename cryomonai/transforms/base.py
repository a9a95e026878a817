"""The dictionary twin shared by all our random array transforms, their common call, and the input check.

MONAI's own dictionary transforms keep a second random state in the ``…d`` class (for ``prob``)
next to the array transform's; ours keep exactly one: the array transform draws everything
(whether to act, and its parameters) from its ``self.R``, once per call, and the twin applies that
one draw to every key (so an image and its mask move together). Views for self-supervised learning
come from calling a pipeline once per view (:class:`cryomonai.transforms.MultiViewd`), never from
listing view keys in one dictionary transform.

A twin is declared, not written: ``class RandFood(RandArrayd, array=RandFoo)`` gets
``__init__(keys, <RandFoo's arguments with its defaults>, allow_missing_keys=False)``, so the array
transform's signature is the one place its keyword arguments (the bundle's JSON keys) and defaults live.
"""

from __future__ import annotations

import inspect
from collections.abc import Hashable, Mapping
from typing import Any, ClassVar

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import get_track_meta
from monai.transforms import MapTransform, Randomizable, RandomizableTransform
from monai.utils import convert_to_tensor
from monai.utils.enums import TransformBackends

from cryomonai.errors import ConfigError

__all__ = ["check_volume", "RandVolumeTransform", "RandArrayd"]


def check_volume(img: Any, where: str) -> torch.Tensor:
    """Return ``img`` as a float tensor of shape (C, D, H, W) (channel first, spatial z, y, x).

    Like MONAI's own transforms, returns a ``MetaTensor`` (metadata kept) while
    ``monai.data.get_track_meta()`` is on (the default), so a batch never mixes tensor types.
    Raises :class:`~cryomonai.errors.ConfigError` for anything that is not a 4-D real volume (a pipeline
    without ``EnsureChannelFirstd``).
    """
    t = convert_to_tensor(img, track_meta=get_track_meta())
    if t.ndim != 4 or t.is_complex():
        raise ConfigError(
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

    Used directly as ``RandArrayd(keys, transform)``, or subclassed with the array transform's class
    as a class keyword, ``class RandLowPassd(RandArrayd, array=RandLowPass)``, which writes the twin's
    ``__init__`` (and the Args of its docstring) from that class's signature:
    ``RandLowPassd(keys, prob=0.3, cutoff_range=(0.5, 1.0), width=0.05, allow_missing_keys=False)``
    builds ``RandLowPass(prob=..., cutoff_range=..., width=...)``; ``inspect.signature`` shows exactly
    those parameters and defaults (the bundle's JSON keys), and positional calls work as well.

    Args:
        keys: keys of the (C, D, H, W) volumes to transform with the same random draw.
        transform: a ``RandomizableTransform`` with ``randomize(img)`` and
            ``__call__(img, randomize=...)``; it holds the probability and the random state.
        allow_missing_keys: don't raise if a key is missing.

    Attributes:
        array_class: the array transform class a subclass was declared with (``None`` here).

    Example:
        >>> from cryomonai.transforms.intensity import RandLowPassd
        >>> RandLowPassd.array_class.__name__, list(inspect.signature(RandLowPassd).parameters)
        ('RandLowPass', ['keys', 'prob', 'cutoff_range', 'width', 'allow_missing_keys'])
        >>> RandLowPassd("image", 1.0).transform.prob
        1.0
    """

    backend = [TransformBackends.TORCH]
    array_class: ClassVar[type[RandomizableTransform] | None] = None

    def __init_subclass__(cls, array: type[RandomizableTransform] | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if array is not None:
            if "__init__" in cls.__dict__:
                raise TypeError(f"{cls.__name__} is declared with array={array.__name__}: it gets its __init__ from it")
            cls.array_class = array
            cls.__init__ = _twin_init(cls, array)  # type: ignore[method-assign]
            cls.__doc__ = _twin_doc(cls, array)

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


_KEYS = inspect.Parameter("keys", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation="KeysCollection")
_ALLOW_MISSING = inspect.Parameter(
    "allow_missing_keys", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=False, annotation="bool"
)


def _twin_init(twin: type[RandArrayd], array: type[RandomizableTransform]) -> Any:
    """``twin.__init__(self, keys, <array's parameters>, allow_missing_keys=False)``, building ``array``."""
    signature = inspect.signature(array)
    signature = signature.replace(
        parameters=[_KEYS, *signature.parameters.values(), _ALLOW_MISSING], return_annotation="None"
    )

    def __init__(self: RandArrayd, *args: Any, **kwargs: Any) -> None:
        try:
            arguments = signature.bind(*args, **kwargs)
        except TypeError as error:
            raise TypeError(f"{twin.__name__}(): {error}") from None
        arguments.apply_defaults()
        options = dict(arguments.arguments)
        keys, allow_missing_keys = options.pop("keys"), options.pop("allow_missing_keys")
        RandArrayd.__init__(self, keys, array(**options), allow_missing_keys)

    self_param = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    __init__.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[self_param, *signature.parameters.values()]
    )
    __init__.__qualname__ = f"{twin.__qualname__}.__init__"
    __init__.__module__ = twin.__module__
    __init__.__doc__ = f"Build the :class:`{array.__name__}` whose one draw per call transforms every key."
    return __init__


def _twin_doc(twin: type[RandArrayd], array: type[RandomizableTransform]) -> str:
    """The twin's own docstring (or a default one) with the Args of its generated ``__init__``."""
    names = ", ".join(inspect.signature(array).parameters)
    summary = inspect.cleandoc(twin.__doc__ or f"Dictionary twin of :class:`{array.__name__}`.")
    return (
        f"{summary}\n\n"
        "Args:\n"
        "    keys: keys of the (C, D, H, W) volumes to transform with the same random draw.\n"
        f"    {names}: as :class:`{array.__name__}` (the same defaults).\n"
        "    allow_missing_keys: don't raise if a key is missing.\n"
    )
