"""The encoder registry: name → factory, and the one interface every encoder has.

An encoder is an ``nn.Module`` with

* ``forward(x)``: ``(B, C, D, H, W)`` → ``(B, F)`` features (axis order z, y, x);
* ``num_features``: ``F``;
* ``cam_layer``: dotted module name for Grad-CAM
  (``monai.visualize.GradCAM(nn_module=net, target_layers=net.cam_layer)``).

Every factory takes ``spatial_dims`` and ``in_channels`` (defaults 3 and 1) and a ``norm`` that is
settable from a bundle's JSON. Adding an encoder is one line in :data:`ENCODERS`; the tests in
``tests/test_networks.py`` are parametrized over it.

Example:
    >>> net = build_encoder("rb3d")
    >>> net.num_features, net.cam_layer
    (256, 'features.block4')
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from torch import nn

from cryomonai.errors import ConfigError
from cryomonai.networks.monai_nets import densenet121, resnet10
from cryomonai.networks.rb3d import RB3D, RB3DOriginal

__all__ = ["ENCODERS", "build_encoder", "encoder_args"]

ENCODERS: dict[str, Callable[..., nn.Module]] = {
    "rb3d": RB3D,  # Che et al. 2018 / Gupta et al. 2022, adaptive pool → 256 features, 0.12 M params
    "rb3d_bn": partial(RB3D, norm="batch"),  # rb3d with BatchNorm after every conv: random init trains in 60 epochs
    "rb3d_original": RB3DOriginal,  # the Keras original, FC-1024 ×2, 135 M params at 32³
    "resnet10": resnet10,  # MONAI ResNet-10, 512 features
    "densenet121": densenet121,  # MONAI DenseNet-121, 1024 features
}


def build_encoder(name: str, **kwargs: Any) -> nn.Module:
    """Build the encoder registered as ``name`` with the factory's keyword arguments.

    Raises:
        ConfigError: ``name`` is not in :data:`ENCODERS`.
    """
    if name not in ENCODERS:
        raise ConfigError("encoder", f"unknown encoder {name!r}", f"use one of {sorted(ENCODERS)}")
    net = ENCODERS[name](**kwargs)
    net.encoder_args = dict(kwargs)  # what encoder_args() saves in a checkpoint's run info
    return net


def encoder_args(net: nn.Module) -> dict[str, Any]:
    """The keyword arguments ``net`` was built with by :func:`build_encoder` (``{}`` for its defaults).

    A bundle run saves them in its checkpoints' run info (``"encoder_args"``), so whatever rebuilds the
    network from a checkpoint (evaluation, Grad-CAM, frozen features) builds the one that was trained, e.g.
    ``network_def#channels: 64`` without being told again.

    Example:
        >>> encoder_args(build_encoder("rb3d", channels=16))
        {'channels': 16}
    """
    return dict(getattr(net, "encoder_args", {}))
