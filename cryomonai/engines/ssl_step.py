"""One self-supervised optimisation step, as the ``iteration_update`` of MONAI's ``SupervisedTrainer``.

Contrastive pretraining (Gupta et al. 2022, §3.1: SimCLR, MoCo, SwAV; plus VICReg) needs no new
engine: MONAI's :class:`~monai.engines.SupervisedTrainer` takes a custom step, and everything else
(epochs, handlers, checkpoints, DDP samplers) stays MONAI's and Ignite's. A bundle says::

    "trainer": {"_target_": "SupervisedTrainer", "network": "@network", "optimizer": "@optimizer",
                "loss_function": null, "iteration_update": "$cryomonai.engines.ssl_iteration",
                "decollate": false, ...}

``network`` is :class:`SSLStep` (the method's ``training_step`` as a module's ``forward``, so
``DistributedDataParallel`` can wrap it and all-reduce its gradients) or the bare SSL method (in
one process; under DDP only if its ``forward`` accepts the list of views). The batch holds the views ``"view_0"``, ``"view_1"`` … (``(B, 1, D, H, W)``, axes
z, y, x) made by :class:`~cryomonai.transforms.MultiViewd`.

Example:
    >>> import torch
    >>> from monai.engines import SupervisedTrainer
    >>> from cryomonai.networks import build_encoder
    >>> from cryomonai.ssl import build_method
    >>> method = build_method("moco", build_encoder("rb3d", channels=8), queue_size=8)
    >>> batches = [{"view_0": torch.randn(4, 1, 8, 8, 8), "view_1": torch.randn(4, 1, 8, 8, 8)}]
    >>> trainer = SupervisedTrainer("cpu", 1, batches, SSLStep(method), torch.optim.Adam(method.parameters()),
    ...                             None, iteration_update=ssl_iteration, decollate=False)
    >>> trainer.run()
    >>> sorted(trainer.state.output), int(method.steps_done)
    (['loss', 'pos_sim'], 1)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from monai.engines.utils import IterationEvents, PrepareBatch
from monai.utils import convert_to_tensor
from torch import nn
from torch.nn.parallel import DataParallel, DistributedDataParallel

from cryomonai.errors import ConfigError
from cryomonai.ssl.base import SSLMethod

__all__ = ["SSLPrepareBatch", "SSLStep", "check_batches", "ssl_iteration", "unwrap_ssl_method"]


class SSLStep(nn.Module):
    """An SSL method's training step as ``forward``: ``views → {"loss", **logs}``.

    ``DistributedDataParallel`` synchronises gradients only for what runs inside its ``forward``;
    wrapping the method in this module lets ``DDP(SSLStep(method))`` train it. The method (and so
    its ``state_dict``, queue included) is :attr:`method`.

    Args:
        method: any method of :data:`cryomonai.ssl.METHODS`.
    """

    def __init__(self, method: SSLMethod) -> None:
        super().__init__()
        self.method = method

    def forward(self, views: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        # n_views × (B, C, D, H, W) → {"loss": scalar with gradient, **detached scalar logs}
        return self.method.training_step(views)


def unwrap_ssl_method(network: nn.Module) -> SSLMethod:
    """The SSL method inside ``network``: the method, :class:`SSLStep`, or either inside (D)DP or ``torch.compile``.

    Raises:
        ConfigError: ``network`` holds no SSL method.
    """
    module = getattr(network, "_orig_mod", network)  # torch.compile(...) wrapper
    module = module.module if isinstance(module, (DistributedDataParallel, DataParallel)) else module
    module = getattr(module, "_orig_mod", module)  # DDP(torch.compile(...))
    if isinstance(module, SSLStep):
        return module.method
    if isinstance(module, SSLMethod):  # DDP(method)(views) runs training_step in the method's forward
        return module
    raise ConfigError(
        "ssl_iteration",
        f"the trainer's network is a {type(module).__name__}, not an SSL method",
        "give the trainer cryomonai.engines.SSLStep(method) (wrapped in DistributedDataParallel for DDP)",
    )


class SSLPrepareBatch(PrepareBatch):
    """The views of a batch, on the engine's device: the ``prepare_batch`` of an SSL trainer.

    Without ``views`` the data loader made them (:class:`~cryomonai.transforms.MultiViewd`): the
    batch's ``"view_0"``, ``"view_1"`` … are moved to the device. With ``views`` (a
    :class:`~cryomonai.transforms.BatchedViews`, the bundle's ``augment_on_device``) the loader only
    normalised: the batch's ``"image"`` goes to the device and the views are made there, for the
    whole batch at once. Either way each view leaves as a plain ``(B, C, D, H, W)`` tensor in the
    requested memory format (the trainer's ``to_kwargs``: the bundle's ``channels_last`` switch).

    Args:
        views: batched views made on the device, or ``None`` (views come from the loader).
        image_key: the batch key of the volumes the views are made from.
    """

    def __init__(self, views: Callable[[torch.Tensor], list[torch.Tensor]] | None = None,
                 image_key: str = "image") -> None:
        self.views, self.image_key = views, image_key

    def __call__(self, batchdata: Mapping[str, Any], device: str | torch.device | None = None,
                 non_blocking: bool = False, n_views: int = 2, **kwargs: Any) -> list[torch.Tensor]:
        """``n_views`` tensors on ``device``; ``kwargs`` go to ``Tensor.to`` (e.g. ``memory_format``)."""
        keys = [self.image_key] if self.views is not None else [f"view_{i}" for i in range(n_views)]
        missing = [k for k in keys if k not in batchdata]
        if missing:
            fix = ("the loader's transform must keep 'image' (augment_on_device makes the views)"
                   if self.views is not None else "make the views with cryomonai.transforms.MultiViewd (paper_views / cryo3d_views)")
            raise ConfigError("ssl_iteration", f"the batch has no {missing} (it has {sorted(map(str, batchdata))})",
                              fix)
        to = [convert_to_tensor(batchdata[k], track_meta=False).to(device, non_blocking=non_blocking) for k in keys]
        if self.views is not None:
            to = self.views(to[0])
            if len(to) != n_views:
                raise ConfigError("augment_on_device", f"{len(to)} views made on the device, the method needs {n_views}",
                                  "build the views with n_views = the method's n_views ('$@ssl_method.n_views')")
        return [v.to(**kwargs) if kwargs else v for v in to]


def ssl_iteration(engine: Any, batchdata: Mapping[str, Any]) -> dict[str, float]:
    """One SSL optimisation step for a MONAI ``SupervisedTrainer`` (its ``iteration_update``).

    Gets the views on ``engine.state.device`` from the trainer's ``prepare_batch`` when it is an
    :class:`SSLPrepareBatch` (else a default one: the loader's views moved there), with
    ``engine.to_kwargs`` (e.g. a memory format), runs the method's ``training_step`` — under
    ``torch.autocast`` on that device when ``engine.amp`` (dtype from ``engine.amp_kwargs``,
    default the device's: float16 on CUDA, bfloat16 on CPU) — back-propagates the loss, steps the
    optimizer (through ``engine.scaler`` for float16 only: bfloat16 needs no loss scaling), then calls
    ``method.on_train_step_end(step, total)`` (MoCo's momentum update ...) with ``step`` the
    optimizer steps done and ``total = epoch_length × max_epochs``. Fires MONAI's
    ``IterationEvents`` like the supervised step. Use ``decollate=False`` on the trainer: the
    output is a dict of scalars, not a batch.

    Args:
        engine: a MONAI ``SupervisedTrainer`` whose ``network`` is :class:`SSLStep` (see
            :func:`unwrap_ssl_method`); its ``loss_function`` is unused.
        batchdata: a collated batch holding the views, each ``(B, C, D, H, W)``, or the
            ``"image"`` batch they are made from on the device.

    Returns:
        ``{"loss": float, **the method's logs as floats}``, the ``engine.state.output`` that
        ``StatsHandler`` and ``TensorBoardStatsHandler`` log.
    """
    if batchdata is None:
        raise ValueError("Must provide batch data for current iteration.")
    method = unwrap_ssl_method(engine.network)
    prepare = engine.prepare_batch if isinstance(engine.prepare_batch, SSLPrepareBatch) else SSLPrepareBatch()
    views = prepare(batchdata, engine.state.device, engine.non_blocking, method.n_views, **engine.to_kwargs)
    if prepare.views is not None:  # made here: the batch keeps them for handlers (ViewSlicesHandler)
        engine.state.batch = {**batchdata, **{f"view_{i}": v for i, v in enumerate(views)}}
    engine.network.train()
    engine.optimizer.zero_grad(set_to_none=engine.optim_set_to_none)
    device_type = engine.state.device.type
    amp_kwargs = {"dtype": torch.get_autocast_dtype(device_type), **engine.amp_kwargs}
    # loss scaling only for float16 (bf16 has float32's range); MONAI's scaler is disabled off CUDA
    use_scaler = bool(engine.amp and amp_kwargs["dtype"] == torch.float16 and engine.scaler is not None
                      and engine.scaler.is_enabled())
    with torch.autocast(device_type, enabled=bool(engine.amp), **amp_kwargs):
        out = method.training_step(views) if engine.network is method else engine.network(views)
    engine.fire_event(IterationEvents.FORWARD_COMPLETED)
    engine.fire_event(IterationEvents.LOSS_COMPLETED)
    loss = out["loss"]
    if not torch.isfinite(loss.detach()):
        raise FloatingPointError(f"SSL loss is {float(loss)} at iteration {engine.state.iteration}; lower the lr")
    (engine.scaler.scale(loss) if use_scaler else loss).backward()
    engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
    if use_scaler:
        engine.scaler.step(engine.optimizer)
        engine.scaler.update()
    else:
        engine.optimizer.step()
    total = (engine.state.epoch_length or 0) * (engine.state.max_epochs or 0)
    method.on_train_step_end(engine.state.iteration, max(total, engine.state.iteration))
    engine.fire_event(IterationEvents.MODEL_COMPLETED)
    return {k: float(v.detach()) if isinstance(v, torch.Tensor) else float(v) for k, v in out.items()}


def check_batches(dataloader: Any, batch_size: int) -> None:
    """Refuse a pretraining that would draw no batch: with ``drop_last`` a ``batch_size`` larger than the
    pretraining split (per rank) gives an empty epoch, and the run would end without a checkpoint.

    Raises:
        ConfigError: the loader has no batch.
    """
    if len(dataloader) == 0:
        n = len(dataloader.dataset)
        raise ConfigError("batch_size", f"{batch_size} is larger than the {n} subtomograms of the pretraining split "
                          "(per process): no full batch, so nothing would be trained",
                          f"give --batch_size of at most {n} (a grid preset: 'pretrain': {{'batch_size': ...}}), "
                          "or pretrain on more subtomograms")
