"""Supervised fine-tuning's batch preparation, with the augmented view made on the training device.

Fine-tuning is MONAI's plain ``SupervisedTrainer``; its ``prepare_batch`` hands it ``(image,
label)``. When the bundle's ``augment`` and ``augment_on_device`` are both on, the data loader only
normalises (:func:`cryomonai.transforms.loader_transform`) and :class:`SupervisedPrepareBatch`
replaces the image batch by its augmented view, made from the whole batch on the device by the
batched twin of ``train#transforms`` (``finetune_views(...).batched()``, a
:class:`~cryomonai.transforms.BatchedViews` of one view), as :class:`~cryomonai.engines.SSLPrepareBatch`
does for pretraining. The labels are untouched. Random numbers come from torch's generator on the
device, which :class:`~cryomonai.engines.RNGState` reseeds at each epoch (a resume is exact).

Example:
    >>> import torch
    >>> from cryomonai.transforms import finetune_views
    >>> prepare = SupervisedPrepareBatch(views=finetune_views().batched())
    >>> image, label = prepare({"image": torch.randn(4, 1, 16, 16, 16), "label": torch.arange(4)}, "cpu")
    >>> tuple(image.shape), label.tolist()
    ((4, 1, 16, 16, 16), [0, 1, 2, 3])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from cryomonai.engines.perf import PrepareBatchMemoryFormat
from cryomonai.errors import ConfigError, CryoDataError

__all__ = ["SupervisedPrepareBatch", "epoch_scale"]


def epoch_scale(epochs: int, min_steps: int, steps_per_epoch: int) -> int:
    """How many times ``epochs`` to train so that fine-tuning takes at least ``min_steps`` optimizer steps.

    A fixed epoch count gives few steps when there are few labels (50 labels in batches of 16 are
    4 steps an epoch: 20 epochs are 80 steps). The bundle multiplies its ``epochs``, its validation
    interval and the cosine schedule's length by this whole factor, so a run keeps the shape of its
    recipe (as many validations, the same schedule) and takes ``>= min_steps`` steps. ``min_steps``
    0 (the default) keeps ``epochs`` as is.

    Example:
        >>> epoch_scale(20, 600, 4), epoch_scale(20, 600, 15), epoch_scale(20, 600, 30), epoch_scale(20, 0, 4)
        (8, 2, 1, 1)
    """
    epochs, min_steps, steps_per_epoch = int(epochs), int(min_steps), int(steps_per_epoch)
    if epochs < 1 or min_steps < 0:
        raise ConfigError("min_steps", f"epochs {epochs} and min_steps {min_steps}",
                          "set epochs >= 1 and min_steps >= 0 in finetune.json")
    if steps_per_epoch < 1:
        raise CryoDataError("train#dataloader", "no training batch",
                            "label at least one training particle (label_fraction > 0, a 'train' split)")
    return max(1, -(-min_steps // (epochs * steps_per_epoch)))


class SupervisedPrepareBatch(PrepareBatchMemoryFormat):
    """``(image, label)`` on the device, the image ``(B, C, D, H, W)`` replaced by its view made there.

    Without ``views`` it is :class:`~cryomonai.engines.PrepareBatchMemoryFormat` (the loader made
    the augmented image, or there is none). With ``views`` (a callable ``(B, C, D, H, W) → [view]``
    such as ``finetune_views(...).batched()``) the image batch is moved to the device first, then
    augmented there; the view comes back in ``memory_format``.

    Args:
        memory_format: e.g. ``torch.channels_last_3d`` (the bundle's ``memory_format``).
        views: the batched views of one view, or ``None`` (no augmentation here).
    """

    def __init__(self, memory_format: torch.memory_format = torch.contiguous_format,
                 views: Callable[[torch.Tensor], list[torch.Tensor]] | None = None) -> None:
        super().__init__(memory_format)
        self.views = views

    def __call__(
        self, batchdata: Any, device: str | torch.device | None = None, non_blocking: bool = False, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        image, label = super().__call__(batchdata, device, non_blocking, **kwargs)
        if self.views is None:
            return image, label
        views = self.views(image)
        if len(views) != 1:
            raise ConfigError("augment_on_device", f"{len(views)} views of each fine-tuning batch, one is used",
                              "build train#transforms with cryomonai.transforms.finetune_views (one view)")
        return views[0].contiguous(memory_format=self.memory_format), label
