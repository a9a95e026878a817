"""Batch-norm statistics of what the model is evaluated on (precise BN), recomputed before each validation.

A network with batch norm is evaluated with its *running* statistics: an exponential average, over the
training steps, of the statistics of augmented training batches taken with weights that kept changing.
In fine-tuning on a few hundred subtomograms both parts go wrong: the augmented views (SO(3) rotation,
the wedge re-imposed, a shift) are not the volumes validated and tested, and a learning rate that moves
the weights fast leaves the average behind. Measured on the main job (2-core AMD EPYC, bf16): a random-init
classifier fine-tuned on 25 % of the labels scored 14.5 % on validation with its running statistics and
49.7 % with statistics recomputed on its labelled training volumes, un-augmented; across validation passes
its accuracy swung between chance and 39 %, so the best-on-validation checkpoint was chosen on noise
(``docs/records/precise_bn/``).

:class:`PreciseBN` (the bundle's ``precise_bn``, Wu & Johnson 2021, "Rethinking 'Batch' in BatchNorm")
recomputes them before each validation pass: the network's batch-norm layers are reset and fed the
labelled training volumes through the evaluation transform (at most ``max_volumes`` of them, a fixed
seeded choice), in training mode, without gradients, with :func:`torch.optim.swa_utils.update_bn`'s
cumulative average. No label is read; the weights, the optimizer and the random streams of training are
untouched, so the run's training steps are the same with it or without it and only what is validated,
checkpointed as best and then tested changes. The test split's evaluation loads the best checkpoint with
the statistics it was validated with.

Layers the network keeps in eval mode while it trains keep their statistics: in LP-FT's probe phase the
frozen encoder normalises with the statistics its head is being fitted to (until 2026-12-07 they were reset
to mean 0, variance 1 at the first validation, and the probe phase validated at chance).

A network without batch norm is left as it is.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events
from torch import nn
from torch.optim.swa_utils import update_bn
from monai.data import DataLoader
from torch.utils.data import Subset

from cryomonai.data import VolumeStackDataset
from cryomonai.transforms import eval_transform

__all__ = ["PreciseBN", "has_batch_norm"]


def has_batch_norm(network: nn.Module) -> bool:
    """Whether ``network`` has a batch-norm layer that keeps running statistics."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats for m in network.modules())


def _frozen_statistics(model: nn.Module) -> dict[nn.Module, dict[str, torch.Tensor]]:
    """The batch-norm layers that ``model`` keeps in eval mode while it trains (a frozen encoder: LP-FT's
    probe phase, :meth:`~cryomonai.networks.Classifier.freeze`), each with a copy of its statistics.

    ``update_bn`` resets every layer's statistics and then updates only the layers in training mode, so a
    frozen layer would be left with mean 0 and variance 1; its statistics are the ones training uses, and
    they are put back."""
    model.train()  # the mode the network trains in: a frozen encoder stays in eval mode (Classifier.train)
    return {m: {name: getattr(m, name).clone() for name in ("running_mean", "running_var", "num_batches_tracked")}
            for m in model.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats and not m.training}


class _Inferred(nn.Module):
    """``inferer(inputs, network)`` as a module, so that ``update_bn`` runs the network as the evaluator does."""

    def __init__(self, network: nn.Module, inferer: Any) -> None:
        super().__init__()
        self.network, self.inferer = network, inferer

    def forward(self, inputs: torch.Tensor) -> Any:
        return self.inferer(inputs, self.network) if self.inferer is not None else self.network(inputs)


class PreciseBN:
    """Recompute ``network``'s batch-norm statistics on the labelled training volumes before each validation.

    Args:
        network: the classifier being fine-tuned (the bundle's ``classifier``, not a DDP wrapper: every rank
            computes the same statistics from the same volumes).
        table: the particle table (the bundle's ``data#table``).
        labelled: the labelled training subset (the bundle's ``train#labelled``: a ``Subset`` of the
            table's training split as :class:`~cryomonai.data.VolumeStackDataset` orders it).
        cache_path: the bundle's volume cache of the table.
        prepare_batch: the evaluator's (memory format, device); ``None``: the batch's ``"image"`` as it is.
        inferer: the evaluator's (e.g. bf16 autocast), so the statistics are those of the arithmetic that is
            validated; ``None``: the network called directly.
        batch_size: volumes per batch (the bundle's ``batch_size``, as in training).
        max_volumes: at most this many labelled volumes, a fixed choice (seed 0) when there are more.
        enabled: ``False`` attaches nothing: the running statistics of training, as before.
    """

    def __init__(self, network: nn.Module, table: Any, labelled: Subset, cache_path: str | os.PathLike,
                 prepare_batch: Any = None, inferer: Any = None, batch_size: int = 16, max_volumes: int = 512,
                 enabled: bool = True) -> None:
        self.network, self.table, self.labelled, self.cache_path = network, table, labelled, cache_path
        self.prepare_batch, self.inferer = prepare_batch, inferer
        self.batch_size, self.max_volumes, self.enabled = int(batch_size), int(max_volumes), bool(enabled)
        self._volumes: Subset | None = None

    def attach(self, evaluator: Engine) -> None:
        """Recompute at the start of every run of ``evaluator`` (a validation pass)."""
        if self.enabled and has_batch_norm(self.network):
            evaluator.add_event_handler(Events.STARTED, self)

    def volumes(self) -> Subset:
        """The labelled training volumes, un-augmented (at most ``max_volumes``); built once."""
        if self._volumes is None:
            indices = np.asarray(self.labelled.indices)
            if len(indices) > self.max_volumes:
                indices = np.sort(np.random.default_rng(0).choice(indices, self.max_volumes, replace=False))
            train = VolumeStackDataset(self.table, self.cache_path, split="train", transform=eval_transform(),
                                       progress=False)
            self._volumes = Subset(train, [int(i) for i in indices])
        return self._volumes

    @torch.no_grad()
    def recompute(self, device: torch.device | None = None) -> None:
        """Reset the batch-norm statistics and average them over :meth:`volumes` (training mode, no gradients).
        The network's training/eval modes are as they were after."""
        device = device if device is not None else next(self.network.parameters()).device
        # its own generator: iterating a DataLoader draws a seed, which must not move the global stream of training
        loader = DataLoader(self.volumes(), batch_size=self.batch_size, shuffle=False,
                            generator=torch.Generator().manual_seed(0))
        if self.prepare_batch is not None:
            inputs = (self.prepare_batch(batch, device)[0] for batch in loader)
        else:
            inputs = (torch.as_tensor(batch["image"]).to(device) for batch in loader)
        modes = {m: m.training for m in self.network.modules()}
        model = _Inferred(self.network, self.inferer)
        frozen = _frozen_statistics(model)
        try:
            update_bn(inputs, model)
        finally:
            for module, buffers in frozen.items():  # a frozen encoder's statistics are what its head was trained on
                for name, value in buffers.items():
                    getattr(module, name).copy_(value)
            for module, mode in modes.items():
                module.training = mode

    def __call__(self, engine: Engine) -> None:
        self.recompute()
