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

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from monai.engines.utils import IterationEvents
from monai.utils import convert_to_tensor
from torch import nn
from torch.nn.parallel import DataParallel, DistributedDataParallel

from cryomonai.errors import CryoDataError
from cryomonai.ssl.base import SSLMethod

__all__ = ["SSLStep", "ssl_iteration", "unwrap_ssl_method"]


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
        CryoDataError: ``network`` holds no SSL method.
    """
    module = getattr(network, "_orig_mod", network)  # torch.compile(...) wrapper
    module = module.module if isinstance(module, (DistributedDataParallel, DataParallel)) else module
    module = getattr(module, "_orig_mod", module)  # DDP(torch.compile(...))
    if isinstance(module, SSLStep):
        return module.method
    if isinstance(module, SSLMethod):  # DDP(method)(views) runs training_step in the method's forward
        return module
    raise CryoDataError(
        "ssl_iteration",
        f"the trainer's network is a {type(module).__name__}, not an SSL method",
        "give the trainer cryomonai.engines.SSLStep(method) (wrapped in DistributedDataParallel for DDP)",
    )


def _views(batchdata: Mapping[str, Any], keys: Sequence[str], engine: Any) -> list[torch.Tensor]:
    """The views of a collated batch as plain tensors on the engine's device.

    ``engine.to_kwargs`` go to ``Tensor.to`` with the device: the bundle passes
    ``{"memory_format": torch.channels_last_3d}`` there (its ``channels_last`` switch).
    """
    missing = [k for k in keys if k not in batchdata]
    if missing:
        raise CryoDataError(
            "ssl_iteration",
            f"the batch has no {missing} (it has {sorted(map(str, batchdata))})",
            "make the views with cryomonai.transforms.MultiViewd (paper_views / cryo3d_views)",
        )
    kwargs = {"non_blocking": engine.non_blocking, **engine.to_kwargs}
    return [convert_to_tensor(batchdata[k], track_meta=False).to(engine.state.device, **kwargs) for k in keys]


def ssl_iteration(
    engine: Any, batchdata: Mapping[str, Any], view_keys: Sequence[str] | None = None
) -> dict[str, float]:
    """One SSL optimisation step for a MONAI ``SupervisedTrainer`` (its ``iteration_update``).

    Moves the views to ``engine.state.device`` (with ``engine.to_kwargs``, e.g. a memory format),
    runs the method's ``training_step`` — under ``torch.autocast`` on that device when
    ``engine.amp`` (dtype from ``engine.amp_kwargs``, default the device's: float16 on CUDA,
    bfloat16 on CPU) — back-propagates the loss, steps the optimizer (through ``engine.scaler``
    for float16 only: bfloat16 needs no loss scaling), then calls
    ``method.on_train_step_end(step, total)`` (MoCo's momentum update ...) with ``step`` the
    optimizer steps done and ``total = epoch_length × max_epochs``. Fires MONAI's
    ``IterationEvents`` like the supervised step. Use ``decollate=False`` on the trainer: the
    output is a dict of scalars, not a batch.

    Args:
        engine: a MONAI ``SupervisedTrainer`` whose ``network`` is :class:`SSLStep` (see
            :func:`unwrap_ssl_method`); its ``loss_function`` is unused.
        batchdata: a collated batch holding the views, each ``(B, C, D, H, W)``.
        view_keys: keys of the views; default ``"view_0"`` … ``f"view_{n_views - 1}"``.

    Returns:
        ``{"loss": float, **the method's logs as floats}``, the ``engine.state.output`` that
        ``StatsHandler`` and ``TensorBoardStatsHandler`` log.
    """
    if batchdata is None:
        raise ValueError("Must provide batch data for current iteration.")
    method = unwrap_ssl_method(engine.network)
    views = _views(batchdata, view_keys or [f"view_{i}" for i in range(method.n_views)], engine)
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
