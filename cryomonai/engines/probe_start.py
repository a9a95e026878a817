"""LP-FT whose LP is the project's linear probe: fine-tuning starts at the probe and never ends below it.

Kumar et al. (2022) fit the linear probe of LP-FT by logistic regression on frozen features, then
fine-tune the whole network from it. The bundle's ``lp_epochs`` trains the head by SGD for a few epochs
instead, a weaker probe than the one the grid scores every arm with; issue 26's check ("every arm's
fine-tuned model beats the linear probe on its own frozen features") failed with it.

:class:`ProbeStart` (the bundle's ``lp_probe``) makes the start of fine-tuning *that* probe: before the
first training step of a fresh run it computes the encoder's frozen features of the training split
(eval mode, the evaluation transform), fits the probe the readouts use (``fit``, e.g.
:func:`cryomonai.evaluation.readouts.fit_linear_probe`: features standardised on the training split,
logistic regression on the labelled rows), folds the standardisation into the head's ``Linear`` layer
(:func:`probe_as_linear`: the classifier's logits are then the probe's decision values) and validates
once. The best-on-validation checkpoint therefore starts at the probe, so the fine-tuned model's
validation accuracy is at least the probe's (up to the arithmetic of the validation pass).

A resumed run (its first iteration is not iteration 1) keeps its checkpoint's head.

Example:
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.preprocessing import StandardScaler
    >>> x = np.random.default_rng(0).normal(size=(60, 4)) * 3 + 1
    >>> y = np.arange(60) % 3
    >>> scaler = StandardScaler().fit(x)
    >>> probe = LogisticRegression().fit(scaler.transform(x), y)
    >>> w, b = probe_as_linear(scaler, probe, 3)
    >>> bool(np.allclose(x @ w.T + b, probe.decision_function(scaler.transform(x))))
    True
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pydoc import locate
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.data import DataLoader
from torch import nn
from torch.utils.data import Subset

from cryomonai.data import VolumeStackDataset
from cryomonai.errors import ConfigError
from cryomonai.transforms import eval_transform

__all__ = ["ProbeStart", "probe_as_linear"]


def probe_as_linear(scaler: Any, probe: Any, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """A fitted ``StandardScaler`` + ``LogisticRegression`` as one linear layer on raw features.

    Returns ``(weight (num_classes, F), bias (num_classes,))`` with ``features @ weight.T + bias`` equal
    to the probe's decision values of the standardised features, so a softmax over them gives the
    probe's probabilities. A binary probe (one row of coefficients) gets logit 0 for its first class; a
    class the probe never saw (no labelled example) gets weight 0 and a bias 10 below the others (never
    predicted at the start, still learnable).
    """
    coef, intercept = np.atleast_2d(probe.coef_), np.atleast_1d(probe.intercept_)
    if coef.shape[0] == 1 and len(probe.classes_) == 2:
        coef, intercept = np.vstack([np.zeros_like(coef), coef]), np.concatenate([[0.0], intercept])
    scale, mean = np.asarray(scaler.scale_, float), np.asarray(scaler.mean_, float)
    w_seen = coef / scale
    b_seen = intercept - w_seen @ mean
    weight = np.zeros((num_classes, coef.shape[1]))
    bias = np.full(num_classes, b_seen.min() - 10.0)
    classes = np.asarray(probe.classes_, dtype=np.int64)
    weight[classes], bias[classes] = w_seen, b_seen
    return weight, bias


def _linear(head: nn.Module) -> nn.Linear:
    layers = [m for m in head.modules() if isinstance(m, nn.Linear)]
    if len(layers) != 1:
        raise ConfigError("finetune.json, key 'lp_probe'", f"needs a head with one Linear layer, this one has {len(layers)}",
                          "set lp_probe to false for this classifier")
    return layers[0]


class ProbeStart:
    """Start fine-tuning at the linear probe on the frozen encoder, validated once (LP-FT with LP by logistic
    regression). See the module's description.

    Args:
        classifier: the :class:`~cryomonai.networks.Classifier` being fine-tuned (``encoder``, ``head``).
        table: the particle table (the bundle's ``data#table``).
        labelled: the labelled training subset (the bundle's ``train#labelled``: a ``Subset`` of a dataset
            whose data dicts carry the table row as ``"index"``).
        cache_path: the bundle's volume cache of the table.
        fit: ``fit(features (N, F), table, labelled_rows) → (scaler, probe)``, the readouts' probe, or its
            dotted name (imported when first used, so a bundle run without ``lp_probe`` does not import it).
        validator: run once after the head is set (the bundle's ``validate#evaluator``), so the start is a
            candidate of the best-on-validation checkpoint; ``None``: not validated.
        enabled: ``False`` attaches nothing (the bundle's default: today's fine-tuning, bit for bit).
        batch_size: volumes per forward pass of the features.
        bn_stats: the validator's :class:`~cryomonai.engines.precise_bn.PreciseBN` (the bundle's
            ``precise_bn``): when enabled, the batch-norm statistics are recomputed as validation will
            recompute them before the features are taken, so the probe is fit on the features it is
            validated with.
    """

    def __init__(self, classifier: nn.Module, table: Any, labelled: Subset, cache_path: str | os.PathLike,
                 fit: Callable[..., tuple[Any, Any]] | str, validator: Engine | None = None, enabled: bool = False,
                 batch_size: int = 64, bn_stats: Any = None) -> None:
        self.classifier, self.table, self.labelled, self.cache_path = classifier, table, labelled, cache_path
        self.fit, self.validator, self.enabled, self.batch_size = fit, validator, bool(enabled), int(batch_size)
        self.bn_stats = bn_stats

    def attach(self, engine: Engine) -> None:
        """Run at the first iteration of a fresh run (``ITERATION_STARTED`` with iteration 1)."""
        if self.enabled:
            engine.add_event_handler(Events.ITERATION_STARTED(once=1), self)

    @torch.no_grad()
    def features(self, device: torch.device) -> np.ndarray:
        """The frozen encoder's features ``(N, F)`` of the table's training rows (other rows NaN)."""
        table = self.table
        train = VolumeStackDataset(table, self.cache_path, split="train", transform=eval_transform(), progress=False)
        encoder = self.classifier.encoder
        modes = {m: m.training for m in encoder.modules()}
        encoder.eval()
        rows, feats = [], []
        try:
            for batch in DataLoader(train, batch_size=self.batch_size, shuffle=False):
                rows.append(np.asarray(batch["index"]).reshape(-1))
                feats.append(encoder(batch["image"].as_tensor().to(device)).float().cpu().numpy())
        finally:
            for module, mode in modes.items():
                module.training = mode
        out = np.full((len(table.df), feats[0].shape[1]), np.nan)
        out[np.concatenate(rows)] = np.concatenate(feats)
        return out

    def __call__(self, engine: Engine) -> None:
        device = next(self.classifier.parameters()).device
        if self.bn_stats is not None and self.bn_stats.enabled:
            self.bn_stats.recompute(device)
        features = self.features(device)
        data = self.labelled.dataset.data  # type: ignore[attr-defined]
        rows = np.array([int(data[i]["index"]) for i in self.labelled.indices], dtype=np.int64)
        fit = locate(self.fit) if isinstance(self.fit, str) else self.fit
        if not callable(fit):
            raise ConfigError("finetune.json, ProbeStart's 'fit'", f"{self.fit!r} is not an importable function",
                              "give a dotted name such as 'cryomonai.evaluation.readouts.fit_linear_probe'")
        scaler, probe = fit(features, self.table, rows)
        fc = _linear(self.classifier.head)
        weight, bias = probe_as_linear(scaler, probe, fc.out_features)
        with torch.no_grad():
            fc.weight.copy_(torch.as_tensor(weight, dtype=fc.weight.dtype))
            fc.bias.copy_(torch.as_tensor(bias, dtype=fc.bias.dtype))
        engine.logger.info(f"lp_probe: the head starts at the linear probe on the frozen encoder ({len(rows)} "
                           f"labelled rows, {features.shape[1]} features)")
        if self.validator is not None:
            self.validator.run(1)
