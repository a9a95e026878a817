"""Self-supervised pretraining methods behind one registry (Gupta et al. 2022 + VICReg).

Every method has the interface of :class:`cryomonai.ssl.base.SSLMethod`:
``method.training_step(views) → {"loss": …, **logs}``, ``method.on_train_step_end(step, total)``,
``method(x) → (B, F)`` features, backbone at ``method.encoder``.

Example:
    >>> from cryomonai.networks import build_encoder
    >>> method = build_method("moco", build_encoder("rb3d"), queue_size=64)
    >>> type(method).__name__, tuple(method.queue.shape)
    ('MoCo', (64, 128))
"""

from __future__ import annotations

from typing import Any

from torch import nn

from cryomonai.errors import ConfigError
from cryomonai.ssl.base import SSLMethod
from cryomonai.ssl.moco import MoCo
from cryomonai.ssl.simclr import SimCLR
from cryomonai.ssl.swav import SwAV
from cryomonai.ssl.vicreg import VICReg

__all__ = ["METHODS", "MoCo", "SSLMethod", "SimCLR", "SwAV", "VICReg", "build_method"]

METHODS: dict[str, type[SSLMethod]] = {"simclr": SimCLR, "moco": MoCo, "swav": SwAV, "vicreg": VICReg}


def build_method(name: str, encoder: nn.Module, **kwargs: Any) -> SSLMethod:
    """Build the method registered as ``name`` around ``encoder`` with its keyword arguments.

    Raises:
        ConfigError: ``name`` is not in :data:`METHODS`.
    """
    if name not in METHODS:
        raise ConfigError("ssl method", f"unknown method {name!r}", f"use one of {sorted(METHODS)}")
    return METHODS[name](encoder, **kwargs)
