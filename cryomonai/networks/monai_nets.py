"""MONAI's own 3D classification networks as cryomonai encoders (``resnet10``, ``densenet121``).

Each factory builds the MONAI network without its class layer and attaches the two attributes of the
encoder interface (:mod:`cryomonai.networks.registry`): ``num_features`` and ``cam_layer``. The module
itself stays MONAI's, so its ``state_dict`` keys are MONAI's (MedicalNet weights for ``resnet10``
load as they are).

Sizes (``FlopCounterMode``, one 1×32³ sample, forward, FLOPs = 2 × MACs), for comparison with
``rb3d`` (0.116 M parameters, 1.0 GFLOPs):

=======================================  ==========  ============  ========
encoder                                  parameters  FLOPs / 32³   features
=======================================  ==========  ============  ========
``resnet10``                             14.36 M     4.45 G        512
``densenet121`` (default, no stem pool)  11.24 M     9.47 G        1024
``densenet121(stem_pool=True)``          11.24 M     1.34 G        1024
=======================================  ==========  ============  ========

Input ``(B, C, D, H, W)`` = ``(B, 1, z, y, x)``; output ``(B, num_features)``.

Example:
    >>> import torch
    >>> net = resnet10()
    >>> net(torch.zeros(2, 1, 16, 16, 16)).shape, net.num_features, net.cam_layer
    (torch.Size([2, 512]), 512, 'layer4')
"""

from __future__ import annotations

from typing import Any

from monai.networks import nets
from torch import nn

__all__ = ["densenet121", "resnet10"]


def resnet10(spatial_dims: int = 3, in_channels: int = 1, norm: str | tuple = "batch", **kwargs: Any) -> nn.Module:
    """MONAI ResNet-10 (Chen et al. 2019, Med3D layout) with ``feed_forward=False``: ``(B, C, *S) → (B, 512)``.

    Args:
        spatial_dims: number of spatial dimensions.
        in_channels: input channels (``n_input_channels`` in MONAI).
        norm: MONAI norm name/args (``"batch"``, ``("group", {"num_groups": 8})`` ...).
        kwargs: any other :class:`monai.networks.nets.ResNet` argument (``conv1_t_size``, ``act`` ...).
    """
    net = nets.resnet10(
        spatial_dims=spatial_dims, n_input_channels=in_channels, feed_forward=False, norm=norm, **kwargs
    )
    net.num_features = net.in_planes  # channels of layer4 after global average pooling
    net.cam_layer = "layer4"
    return net


def densenet121(
    spatial_dims: int = 3,
    in_channels: int = 1,
    norm: str | tuple = "batch",
    stem_pool: bool = False,
    **kwargs: Any,
) -> nn.Module:
    """MONAI DenseNet-121 (Huang et al. 2017) without its class layer: ``(B, C, *S) → (B, 1024)``.

    ``class_layers`` keeps ``relu → global average pool → flatten``; its Linear ``out`` is removed.

    Args:
        spatial_dims: number of spatial dimensions.
        in_channels: input channels.
        norm: MONAI norm name/args.
        stem_pool: keep MONAI's stride-2 max pool after the stride-2 stem convolution. The default
            (``False``) drops it: with it the network shrinks a box 32-fold before the last dense block
            and a 28³ subtomogram reaches zero size; without it 16³, 28³, 32³ and 64³ all work.
        kwargs: any other :class:`monai.networks.nets.DenseNet` argument (``growth_rate``, ``dropout_prob`` ...).
    """
    net = nets.DenseNet121(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=1, norm=norm, **kwargs)
    net.num_features = net.class_layers.out.in_features
    del net.class_layers.out
    if not stem_pool:
        net.features.pool0 = nn.Identity()
    net.cam_layer = "class_layers.relu"  # rectified output of the last dense block (norm5)
    return net
