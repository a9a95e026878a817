"""RB3D, the 3D residual-bottleneck subtomogram classifier of Che et al. (2018), as an encoder.

Gupta et al. (2022, Figure 3) use RB3D as the encoder of every self-supervised method. The trunk is
``Conv 3³ (1→32) → ReLU → MaxPool 2`` followed by four bottleneck blocks (:class:`RB3DBlock`) at half
resolution, each concatenating a 16-channel "right" branch (one 3³ conv) with a 16-channel "left"
branch (1³ → 3³ → 1³ convs). Two heads on that trunk are provided:

* :class:`RB3D` (registry name ``rb3d``, the default): adaptive average pooling to 2³, flatten →
  256 features for any box (16³, 28³, 32³, 64³ ...). This is the compact variant used by PyTorch
  ports of RB3D for SSL; it has no fully connected layer in the encoder.
* :class:`RB3DOriginal` (``rb3d_original``): the Keras original — element-wise dropout 0.7 on the
  left branch of every block (before the concatenation), flatten of the whole ``32 × (S/2)³`` map,
  then ``FC-1024 → ReLU → Dropout 0.5 → FC-1024 → ReLU → Dropout 0.5`` (1024 features). The first FC
  layer depends on the box size, so ``img_size`` is a constructor argument. The class layer
  ``FC-L`` is :class:`cryomonai.networks.heads.Classifier`'s ``head``.

Sizes (``torch.utils.flop_counter.FlopCounterMode``, one 1×32³ sample, forward pass; FLOPs = 2 × MACs;
``norm=None``, encoder only):

=================  ===============  ==================  ========
variant            parameters       forward FLOPs/32³   features
=================  ===============  ==================  ========
``rb3d``           115,904          0.996 G             256
``rb3d_original``  135,384,256      1.267 G             1024
=================  ===============  ==================  ========

Parameter count of ``rb3d`` by hand: stem ``1·32·27 + 32 = 896``; one block = right
``32·16·27 + 16 = 13,840`` + left ``(32·16 + 16) + (16·32·27 + 32) + (32·16 + 16) = 14,912``
= 28,752; four blocks 115,008; total 115,904. ``rb3d_original`` at 32³ adds
``32·16³·1024 + 1024 = 134,218,752`` and ``1024·1024 + 1024 = 1,049,600`` (≈ 135.4 M, of which 99 %
is the first FC layer); with a 28³ box the first FC has ``32·14³·1024 + 1024`` = 89.9 M weights.
FLOPs by hand: stem ``2·27·32·32³`` = 56.6 M, each block ``2·28,672·16³`` = 234.9 M (× 4), and the FC
layers of ``rb3d_original`` ``2·(131,072 + 1,024)·1,024`` = 270.5 M.

All layers come from MONAI's factories, so ``spatial_dims``, ``act`` and ``norm`` are settable from
a bundle's JSON: ``"norm": "batch"`` or ``"norm": ["group", {"num_groups": 8}]``. ``norm=None`` (the
default) is the paper's network (no normalisation); a norm layer goes after every convolution.
Weights are He-initialised (:func:`he_init`), as in PyTorch ports of RB3D and MONAI's ResNet.

Input ``(B, C, D, H, W)`` = ``(B, 1, z, y, x)``; output ``(B, num_features)``.

Example:
    >>> import torch
    >>> net = RB3D()
    >>> net(torch.zeros(2, 1, 32, 32, 32)).shape
    torch.Size([2, 256])
    >>> sum(p.numel() for p in net.parameters())
    115904
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from monai.networks.layers import Conv, Pool, get_act_layer, get_dropout_layer, get_norm_layer
from monai.utils import ensure_tuple_rep
from torch import nn

from cryomonai.errors import ConfigError

__all__ = ["RB3D", "RB3DBlock", "RB3DOriginal", "he_init", "rb3d_trunk"]

NormType = str | tuple | list | None


def he_init(net: nn.Module) -> None:
    """He (Kaiming) normal initialisation, fan-in, of every conv and linear layer; zero biases.

    RB3D has no normalisation layers, so the weights must keep the activation variance through its 13
    convolutions; PyTorch's default (uniform, gain 1/√3) shrinks it layer by layer and leaves the
    features of different subtomograms nearly identical at the start of training.
    """
    for m in net.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def _conv(
    spatial_dims: int, cin: int, cout: int, kernel: int, act: str | tuple | None, norm: NormType
) -> list[nn.Module]:
    """``Conv(kernel, 'same' padding) [→ norm] [→ act]`` as a list of layers."""
    layers: list[nn.Module] = [Conv[Conv.CONV, spatial_dims](cin, cout, kernel_size=kernel, padding=kernel // 2)]
    if norm is not None:
        layers.append(get_norm_layer(name=norm, spatial_dims=spatial_dims, channels=cout))
    if act is not None:
        layers.append(get_act_layer(name=act))
    return layers


class RB3DBlock(nn.Module):
    """One RB3D bottleneck block (Che et al. 2018): ``act(cat(left(x), right(x)))``.

    * right: ``Conv 3³ (C → C/2) → act``
    * left: ``Conv 1³ (C → C/2) → act → Conv 3³ (C/2 → C) → act → Conv 1³ (C → C/2) [→ dropout]``

    Args:
        spatial_dims: number of spatial dimensions (3 for subtomograms).
        channels: input = output channels ``C`` (even).
        act: activation name/args for MONAI's ``get_act_layer``.
        norm: ``None`` (paper) or a MONAI norm name/args, applied after every convolution.
        dropout: element-wise dropout on the left branch (0.7 in the Keras original, 0 here by default).

    Shapes: ``(B, C, *S) → (B, C, *S)``.
    """

    def __init__(self, spatial_dims: int, channels: int, act: str | tuple, norm: NormType, dropout: float) -> None:
        super().__init__()
        half = channels // 2
        self.right = nn.Sequential(*_conv(spatial_dims, channels, half, 3, act, norm))
        left = _conv(spatial_dims, channels, half, 1, act, norm)
        left += _conv(spatial_dims, half, channels, 3, act, norm)
        left += _conv(spatial_dims, channels, half, 1, None, norm)
        if dropout > 0:
            left.append(get_dropout_layer(float(dropout), dropout_dim=1))
        self.left = nn.Sequential(*left)
        self.act = get_act_layer(name=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, C, *S) → cat((B, C/2, *S), (B, C/2, *S)) → (B, C, *S)
        return self.act(torch.cat([self.left(x), self.right(x)], dim=1))


def rb3d_trunk(
    spatial_dims: int, in_channels: int, channels: int, n_blocks: int, act: str | tuple, norm: NormType, dropout: float
) -> nn.Sequential:
    """The RB3D trunk: ``conv0 (3³) → [norm0] → act0 → pool0 (max 2) → block1 … blockN``.

    The arguments are those of :class:`RB3D` (whose defaults are the paper's); the builders below
    the public encoders take them all explicitly, so each default is written once.

    Shapes: ``(B, in_channels, *S) → (B, channels, *(S // 2))``.
    """
    stem = _conv(spatial_dims, in_channels, channels, 3, act, norm)
    names = ["conv0"] + (["norm0"] if norm is not None else []) + ["act0"]
    layers: list[tuple[str, nn.Module]] = list(zip(names, stem))
    layers.append(("pool0", Pool[Pool.MAX, spatial_dims](kernel_size=2, stride=2)))
    for i in range(n_blocks):
        layers.append((f"block{i + 1}", RB3DBlock(spatial_dims, channels, act, norm, dropout)))
    return nn.Sequential(OrderedDict(layers))


class RB3D(nn.Module):
    """RB3D encoder with adaptive pooling (registry name ``rb3d``): ``(B, C, *S) → (B, 256)``.

    Args:
        spatial_dims: number of spatial dimensions.
        in_channels: input channels (1 for a subtomogram).
        channels: trunk width (32 in the paper).
        n_blocks: number of bottleneck blocks (4 in the paper).
        pool_size: adaptive-average-pool output size per axis (2 → ``channels · 2³`` = 256 features).
        act: activation (MONAI name or ``(name, args)``).
        norm: ``None`` (paper) or a MONAI norm, e.g. ``"batch"`` or ``("group", {"num_groups": 8})``.
        dropout: element-wise dropout in the blocks' left branch.

    Attributes:
        num_features: length ``F`` of the output feature vector.
        cam_layer: dotted name of the last block, the Grad-CAM target.
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        channels: int = 32,
        n_blocks: int = 4,
        pool_size: int = 2,
        act: str | tuple = "relu",
        norm: NormType = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.features = rb3d_trunk(spatial_dims, in_channels, channels, n_blocks, act, norm, dropout)
        self.pool = Pool[Pool.ADAPTIVEAVG, spatial_dims](pool_size)
        self.flatten = nn.Flatten(1)
        self.num_features = channels * pool_size**spatial_dims
        self.cam_layer = f"features.block{n_blocks}"
        he_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, C, D, H, W) → (B, 32, D/2, H/2, W/2) → (B, 32, 2, 2, 2) → (B, 256)
        return self.flatten(self.pool(self.features(x)))


class RB3DOriginal(nn.Module):
    """The Keras RB3D of Che et al. (2018) up to its last hidden layer (``rb3d_original``).

    ``trunk (dropout 0.7 in blocks) → flatten → FC-hidden → act → Dropout → FC-hidden → act → Dropout``.

    Args:
        spatial_dims: number of spatial dimensions.
        in_channels: input channels.
        img_size: the box size the network is built for (int or per-axis); the input must match it.
        channels: trunk width (32).
        n_blocks: number of bottleneck blocks (4).
        act: activation.
        norm: ``None`` (paper) or a MONAI norm for the convolutions.
        block_dropout: dropout in the blocks' left branch (0.7).
        hidden: width of the two fully connected layers (1024); this is ``num_features``.
        fc_dropout: dropout after each FC layer (0.5).

    The arguments come in the order of the layers they shape: the trunk's, then the FC layers'.

    Shapes: ``(B, C, *img_size) → (B, hidden)``.
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        img_size: int | Sequence[int] = 32,
        channels: int = 32,
        n_blocks: int = 4,
        act: str | tuple = "relu",
        norm: NormType = None,
        block_dropout: float = 0.7,
        hidden: int = 1024,
        fc_dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.img_size = tuple(int(s) for s in ensure_tuple_rep(img_size, spatial_dims))
        self.features = rb3d_trunk(spatial_dims, in_channels, channels, n_blocks, act, norm, block_dropout)
        n_flat = channels
        for s in self.img_size:
            n_flat *= s // 2
        self.flatten = nn.Flatten(1)
        self.fc = nn.Sequential(
            OrderedDict(
                [
                    ("fc1", nn.Linear(n_flat, hidden)),
                    ("act1", get_act_layer(name=act)),
                    ("drop1", get_dropout_layer(float(fc_dropout), dropout_dim=1)),
                    ("fc2", nn.Linear(hidden, hidden)),
                    ("act2", get_act_layer(name=act)),
                    ("drop2", get_dropout_layer(float(fc_dropout), dropout_dim=1)),
                ]
            )
        )
        self.num_features = hidden
        self.cam_layer = f"features.block{n_blocks}"
        he_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[2:]) != self.img_size:
            raise ConfigError(
                "rb3d_original",
                f"input box {tuple(x.shape[2:])} but the network was built for img_size={self.img_size}",
                "set the encoder's img_size to the subtomogram box, or use 'rb3d' (any box size)",
            )
        # (B, C, *S) → (B, 32, *S/2) → (B, 32·∏S/2) → (B, hidden)
        return self.fc(self.flatten(self.features(x)))
