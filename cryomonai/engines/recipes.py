"""Fine-tuning recipes that keep what pretraining learned: layer-wise lr decay and LP-FT.

Fine-tuning at one rate can throw the pretraining away (issue 26: fine-tuned SimCLR and MoCo fall below
the linear probe on their own frozen features). Two standard remedies, each a bundle key of
``finetune.json`` whose default is today's fine-tuning, bit for bit:

* ``layer_decay`` (default 1.0): layer-wise learning-rate decay (Clark et al. 2020, ELECTRA; Bao et al.
  2022, BEiT). The encoder is cut into blocks (:func:`encoder_blocks`), stem first; block ``i`` of
  ``0 … depth`` trains at ``encoder_lr · layer_decay ** (depth − i)``: the deepest block (next to the head)
  at ``encoder_lr``, the stem at the smallest rate. :func:`finetune_param_groups` builds the optimizer's
  parameter groups (the bundle's ``optimizer#params``); the head is the last group, at the optimizer's
  ``lr``.
* ``lp_epochs`` (default 0): linear probing, then fine-tuning (LP-FT, Kumar et al. 2022, "Fine-Tuning can
  Distort Pretrained Features and Underperform Out-of-Distribution"). For the first ``lp_epochs`` the
  encoder is frozen as in a linear probe (no gradients, BatchNorm statistics and dropout in eval mode:
  :class:`LinearProbeFirst`) and only the head trains, at a constant rate; then the whole network
  fine-tunes with the recipe's rates and its cosine schedule, which starts there
  (:func:`finetune_lr_scheduler`). The fine-tuning phase is the plain recipe's, started from a
  trained head instead of a random one.

Example:
    >>> import torch
    >>> from cryomonai.networks import Classifier, build_encoder
    >>> net = Classifier(build_encoder("rb3d", channels=8), num_classes=3)
    >>> [name for name, _ in encoder_blocks(net.encoder)]
    ['features.conv0', 'features.block1', 'features.block2', 'features.block3', 'features.block4']
    >>> groups = finetune_param_groups(net, encoder_lr=1e-3, layer_decay=0.5)
    >>> [round(g["lr"], 7) for g in groups[:-1]], "lr" in groups[-1]
    ([6.25e-05, 0.000125, 0.00025, 0.0005, 0.001], False)
"""

from __future__ import annotations

import math

from ignite.engine import Engine, Events
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import CosineAnnealingLR, LambdaLR, LRScheduler

from cryomonai.errors import ConfigError

__all__ = ["LinearProbeFirst", "check_layer_decay", "encoder_blocks", "finetune_lr_scheduler",
           "finetune_param_groups"]

#: containers that are opened: their children are blocks (subclasses such as MONAI's dense blocks are blocks)
_CONTAINERS = (nn.Sequential, nn.ModuleList)
#: normalisation layers: they join the block before them (``conv → norm`` is one block)
_NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


def encoder_blocks(encoder: nn.Module) -> list[tuple[str, list[nn.Parameter]]]:
    """The encoder's blocks in forward order, stem first: ``[(name, parameters), …]``.

    Generic over :data:`~cryomonai.networks.ENCODERS` (they register their modules in forward order):
    the encoder's children are taken in order, plain ``nn.Sequential``/``nn.ModuleList`` containers are
    opened (recursively), every other module with parameters is one block, and a normalisation layer
    joins the block before it. Modules without parameters (activations, pools) are skipped; parameters
    registered on the encoder itself go to the stem. Every parameter is in exactly one block.

    ``rb3d``: stem conv, block1 … block4 (5 blocks); ``rb3d_original``: those and fc1, fc2 (7);
    ``resnet10``: stem conv + bn, then one block per residual block (5); ``densenet121``: stem, the four
    dense blocks and three transitions (8).
    """
    blocks: list[tuple[str, list[nn.Parameter]]] = []
    seen: set[int] = set()

    def visit(module: nn.Module, prefix: str) -> None:
        for name, child in module.named_children():
            if type(child) in _CONTAINERS:
                visit(child, f"{prefix}{name}.")
                continue
            params = [p for p in child.parameters() if id(p) not in seen]
            if not params:
                continue
            seen.update(id(p) for p in params)
            if isinstance(child, _NORMS) and blocks:
                blocks[-1][1].extend(params)
            else:
                blocks.append((f"{prefix}{name}", params))

    visit(encoder, "")
    rest = [p for p in encoder.parameters() if id(p) not in seen]  # registered on a container itself
    if rest:
        if not blocks:
            blocks.append(("", []))
        blocks[0][1][:0] = rest
    return blocks


def finetune_param_groups(classifier: nn.Module, encoder_lr: float, layer_decay: float = 1.0) -> list[dict]:
    """The fine-tuning optimizer's parameter groups: the encoder's, then the head's (the bundle's
    ``optimizer#params``).

    ``layer_decay`` 1 gives today's two groups, ``[{encoder, lr: encoder_lr}, {head}]`` (bit-identical
    training). Otherwise one group per block of :func:`encoder_blocks`, stem first, block ``i`` of
    ``0 … depth`` at ``encoder_lr · layer_decay ** (depth − i)``, then the head. The head's group has
    no ``lr``: it trains at the optimizer's ``lr``.

    Args:
        classifier: a :class:`~cryomonai.networks.Classifier` (``encoder`` and ``head``).
        encoder_lr: the rate of the encoder's deepest block (all of it when ``layer_decay`` is 1).
        layer_decay: the factor per block towards the stem, in (0, 1].

    Raises:
        ConfigError: ``layer_decay`` outside (0, 1].
    """
    layer_decay = float(layer_decay)
    if layer_decay == 1.0:
        return [{"params": list(classifier.encoder.parameters()), "lr": encoder_lr},
                {"params": list(classifier.head.parameters())}]
    if not 0.0 < layer_decay < 1.0:
        raise ConfigError("finetune.json, key 'layer_decay'", f"is {layer_decay}",
                          "give a factor in (0, 1]: 1 is one rate for the whole encoder, e.g. 0.7 decays it per block")
    blocks = encoder_blocks(classifier.encoder)
    depth = len(blocks) - 1
    groups = [{"params": params, "lr": encoder_lr * layer_decay ** (depth - i)} for i, (_, params) in enumerate(blocks)]
    return groups + [{"params": list(classifier.head.parameters())}]


def check_layer_decay(optimizer: Optimizer, classifier: nn.Module, encoder_lr: float, layer_decay: float) -> None:
    """Raise if ``layer_decay`` ≠ 1 but the optimizer was not built by :func:`finetune_param_groups` with it.

    A preset that overrides the whole ``optimizer`` with its own ``params`` expression would otherwise
    ignore the key silently. Compares each group's parameters and initial rate.

    Raises:
        ConfigError: the groups differ from the ones ``layer_decay`` asks for.
    """
    if float(layer_decay) == 1.0:
        return
    groups = finetune_param_groups(classifier, encoder_lr, layer_decay)
    want = [({id(p) for p in g["params"]}, g.get("lr")) for g in groups]
    have = [({id(p) for p in g["params"]}, g.get("initial_lr", g["lr"])) for g in optimizer.param_groups]
    same = len(want) == len(have) and all(
        w_ids == h_ids and (w_lr is None or math.isclose(w_lr, h_lr, rel_tol=1e-9))
        for (w_ids, w_lr), (h_ids, h_lr) in zip(want, have))
    if not same:
        raise ConfigError("optimizer#params", f"layer_decay is {layer_decay} but the optimizer's parameter groups "
                          f"do not apply it ({len(have)} groups, {len(want)} expected)",
                          "set optimizer#params to '$cryomonai.engines.finetune_param_groups(@classifier, "
                          "@encoder_lr, @layer_decay)' (finetune.json's), also where a preset overrides 'optimizer'")


class _ProbeThenCosine:
    """Factor of the base rate at epoch index ``t``: 1 during the probe, then a cosine to 0 over ``T``."""

    def __init__(self, lp_epochs: int, ft_epochs: int) -> None:
        self.lp_epochs, self.ft_epochs = int(lp_epochs), int(ft_epochs)

    def __call__(self, t: int) -> float:
        if t < self.lp_epochs:
            return 1.0
        return 0.5 * (1.0 + math.cos(math.pi * (t - self.lp_epochs) / self.ft_epochs))


def finetune_lr_scheduler(optimizer: Optimizer, train_epochs: int, lp_epochs: int = 0) -> LRScheduler:
    """The fine-tuning schedule, stepped once per epoch: a cosine to 0 over the fine-tuning epochs.

    ``lp_epochs`` 0: ``CosineAnnealingLR(optimizer, T_max=train_epochs)``, as before. Otherwise the
    first ``lp_epochs`` of the ``train_epochs`` (the probe, :class:`LinearProbeFirst`) keep every
    group's base rate, and the cosine runs over the remaining ``train_epochs − lp_epochs``, starting at
    the base rates: during epoch ``e`` (1-based) the factor is 1 for ``e ≤ lp_epochs``, then
    ``(1 + cos(π (e − 1 − lp_epochs) / (train_epochs − lp_epochs))) / 2``.

    Raises:
        ConfigError: ``lp_epochs`` < 0 or not fewer than ``train_epochs``.
    """
    train_epochs, lp_epochs = int(train_epochs), int(lp_epochs)
    if lp_epochs == 0:
        return CosineAnnealingLR(optimizer, T_max=train_epochs)
    if not 0 < lp_epochs < train_epochs:
        raise ConfigError("finetune.json, key 'lp_epochs'", f"is {lp_epochs} of {train_epochs} training epochs",
                          "give 0 (no probe phase) or a whole number of epochs >= 1; "
                          "'epochs' counts the fine-tuning after it")
    return LambdaLR(optimizer, _ProbeThenCosine(lp_epochs, train_epochs - lp_epochs))


class LinearProbeFirst:
    """LP-FT's probe phase: during epochs ``1 … epochs`` the classifier's encoder is frozen, then trains.

    At every ``EPOCH_STARTED`` the state follows the epoch number alone, so a resumed run is in the right
    phase. Frozen means what a linear probe is (:meth:`~cryomonai.networks.Classifier.freeze`): the
    encoder's parameters do not require gradients (they get none, so the optimizer leaves them and their
    state untouched: weights exactly unchanged, even with weight decay) and the encoder stays in eval
    mode during training (BatchNorm running statistics unchanged, no dropout). A classifier built with
    ``freeze_encoder`` stays frozen throughout. ``epochs`` 0 attaches nothing (the plain recipe).

    Args:
        classifier: the :class:`~cryomonai.networks.Classifier` being trained (not a DDP wrapper; under DDP
            set ``find_unused_parameters`` while the probe runs, as ``multi_gpu_finetune.json`` does).
        epochs: the probe's epochs (the bundle's ``lp_train_epochs``).
    """

    def __init__(self, classifier: nn.Module, epochs: int = 0) -> None:
        if int(epochs) < 0:
            raise ConfigError("finetune.json, key 'lp_epochs'", f"is {epochs}", "give 0 or a whole number of epochs")
        self.classifier, self.epochs = classifier, int(epochs)
        self.always_frozen = bool(getattr(classifier, "freeze_encoder", False))

    def attach(self, engine: Engine) -> None:
        """Set the phase at every ``EPOCH_STARTED`` (nothing when ``epochs`` is 0)."""
        if self.epochs > 0:
            engine.add_event_handler(Events.EPOCH_STARTED, self)

    def __call__(self, engine: Engine) -> None:
        self.classifier.freeze(self.always_frozen or engine.state.epoch <= self.epochs)
