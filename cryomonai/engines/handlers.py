"""Small Ignite handlers MONAI lacks for SSL on cryo-ET: view slices and lr in TensorBoard, a progress bar.

Each has MONAI's handler shape (constructor with the settings, ``attach(engine)``), so a bundle
lists it among ``train_handlers`` like ``StatsHandler``:

* :class:`ViewSlicesHandler` — central slices of the augmented views of the last batch, so one can
  see what the network contrasts (the missing wedge shows in the xz slice);
* :class:`LearningRateWriter` — the optimizer's learning rate per epoch;
* :class:`ProgressBarHandler` — Ignite's ``ProgressBar`` showing chosen entries of the output.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from ignite.engine import Engine, Events
from ignite.handlers import ProgressBar
from monai.utils import convert_to_tensor
from torch.optim import Optimizer

__all__ = ["LearningRateWriter", "ProgressBarHandler", "ViewSlicesHandler", "central_slices"]


def _rescale(image: torch.Tensor) -> torch.Tensor:
    """Min-max rescale to [0, 1] (a constant image becomes 0)."""
    lo, hi = image.min(), image.max()
    return (image - lo) / (hi - lo) if hi > lo else torch.zeros_like(image)


def central_slices(volume: torch.Tensor) -> torch.Tensor:
    """``(D, H, W)`` (z, y, x) → ``(H + D, W)``: the xy slice at z = D/2 above the xz slice at y = H/2.

    Each slice is rescaled to [0, 1] on its own. The beam is along z, so the xz slice shows the
    missing wedge's elongation.

    Example:
        >>> central_slices(torch.arange(4 * 3 * 2.0).reshape(4, 3, 2)).shape
        torch.Size([7, 2])
    """
    d, h, _ = volume.shape
    return torch.cat([_rescale(volume[d // 2]), _rescale(volume[:, h // 2, :])], dim=0)


class ViewSlicesHandler:
    """Every ``interval`` epochs, write the central slices of one sample's views to TensorBoard.

    The image (tag ``tag``) has one column per view (``keys``), each :func:`central_slices` of
    channel 0: ``(1, H + D, V·W)``, global step = epoch.

    Args:
        summary_writer: a ``torch.utils.tensorboard.SummaryWriter`` (the bundle's shared one).
        keys: batch keys of the views.
        index: which sample of the batch.
        interval: epochs between images.
        tag: TensorBoard tag.
    """

    def __init__(
        self, summary_writer: Any, keys: Sequence[str] = ("view_0", "view_1"), index: int = 0, interval: int = 1,
        tag: str = "views",
    ) -> None:
        self.writer, self.keys, self.index, self.interval, self.tag = summary_writer, tuple(keys), index, interval, tag

    def attach(self, engine: Engine) -> None:
        """Write at every ``interval``-th ``EPOCH_COMPLETED``."""
        engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.interval), self)

    def __call__(self, engine: Engine) -> None:
        batch = engine.state.batch
        if isinstance(batch, Sequence):  # decollated: a list of samples
            sample = batch[self.index]
            volumes = [convert_to_tensor(sample[k], track_meta=False) for k in self.keys]
        else:
            volumes = [convert_to_tensor(batch[k], track_meta=False)[self.index] for k in self.keys]
        columns = [central_slices(v.detach().float().cpu()[0]) for v in volumes]  # each (H + D, W)
        self.writer.add_image(self.tag, torch.cat(columns, dim=1)[None], engine.state.epoch)


class LearningRateWriter:
    """Write the learning rate of each parameter group to TensorBoard at every epoch start.

    Tags ``tag`` (group 0) and ``f"{tag}_{i}"`` (group i > 0); global step = the epoch.

    Args:
        summary_writer: a ``SummaryWriter``.
        optimizer: the trainer's optimizer.
        tag: TensorBoard tag.
    """

    def __init__(self, summary_writer: Any, optimizer: Optimizer, tag: str = "lr") -> None:
        self.writer, self.optimizer, self.tag = summary_writer, optimizer, tag

    def attach(self, engine: Engine) -> None:
        """Write at every ``EPOCH_STARTED`` (the rate used during that epoch)."""
        engine.add_event_handler(Events.EPOCH_STARTED, self)

    def __call__(self, engine: Engine) -> None:
        for i, group in enumerate(self.optimizer.param_groups):
            self.writer.add_scalar(self.tag if i == 0 else f"{self.tag}_{i}", group["lr"], engine.state.epoch)


class ProgressBarHandler:
    """Ignite's :class:`~ignite.handlers.ProgressBar`, showing ``keys`` of the iteration output.

    Args:
        keys: entries of a dict output to show (a missing one is skipped).
        persist: keep the bar after each epoch.
        disable: no bar (e.g. in tests or on other ranks).
    """

    def __init__(self, keys: Sequence[str] = ("loss",), persist: bool = False, disable: bool = False) -> None:
        self.keys = tuple(keys)
        self.bar = ProgressBar(persist=persist, disable=disable)

    def _shown(self, output: Any) -> dict[str, Any]:
        return {k: output[k] for k in self.keys if k in output} if isinstance(output, Mapping) else {}

    def attach(self, engine: Engine) -> None:
        """Attach the bar, updated at every iteration."""
        self.bar.attach(engine, output_transform=self._shown)
