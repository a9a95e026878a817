"""Heads on top of an encoder: one MLP for every projection head, and the fine-tuning classifier.

:class:`MLPHead` is ``Linear → [norm] → act`` repeated, ending in a plain ``Linear`` (``[norm]`` at the
end only with ``last_norm``). The heads of the methods are instances of it:

* SimCLR (Chen et al. 2020): ``MLPHead([F, F, 128])`` (BatchNorm in the hidden layer);
* MoCo v2 (Chen et al. 2020b): ``MLPHead([F, F, 128], norm=None)``;
* SwAV (Caron et al. 2020): ``MLPHead([F, hidden, 128])``;
* VICReg (Bardes et al. 2022): ``MLPHead([F, 4F, 4F, 4F])`` (the "expander").

:class:`Classifier` is ``encoder → Linear`` with ``encoder`` and ``head`` attributes, so fine-tuning
loads the ``encoder.*`` weights of an SSL checkpoint (every method keeps its backbone as
``encoder``) and trains a fresh ``head``.

Example:
    >>> import torch
    >>> head = MLPHead([256, 256, 128])
    >>> head(torch.zeros(4, 256)).shape
    torch.Size([4, 128])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from monai.networks.layers import get_act_layer, get_dropout_layer, get_norm_layer
from torch import nn

from cryomonai.errors import CryoDataError

__all__ = ["Classifier", "MLPHead"]


class MLPHead(nn.Sequential):
    """Multi-layer perceptron ``dims[0] → dims[1] → … → dims[-1]``: ``(B, dims[0]) → (B, dims[-1])``.

    Args:
        dims: layer widths, at least two (``[in, out]`` is a single Linear).
        norm: MONAI norm after every hidden Linear (``"batch"`` → BatchNorm1d), or ``None``.
        last_norm: also normalise the output (affine-free BatchNorm is common for SSL outputs; this
            uses the same ``norm``).
        act: activation after every hidden layer.
    """

    def __init__(
        self,
        dims: Sequence[int],
        norm: str | tuple | None = "batch",
        last_norm: bool = False,
        act: str | tuple = "relu",
    ) -> None:
        if len(dims) < 2:
            raise CryoDataError("MLPHead", f"dims={list(dims)} has fewer than two widths", "give [in, ..., out]")
        layers: list[nn.Module] = []
        for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
            last = i == len(dims) - 2
            layers.append(nn.Linear(d_in, d_out))
            if norm is not None and (not last or last_norm):
                layers.append(get_norm_layer(name=norm, spatial_dims=1, channels=d_out))
            if not last:
                layers.append(get_act_layer(name=act))
        super().__init__(*layers)
        self.in_features, self.out_features = int(dims[0]), int(dims[-1])


class Classifier(nn.Module):
    """``encoder → [dropout] → Linear(F, num_classes)``: ``(B, C, D, H, W) → (B, num_classes)`` logits.

    Args:
        encoder: any registered encoder (has ``num_features`` and ``cam_layer``).
        num_classes: number of classes ``L`` (the ``FC-L`` layer of RB3D).
        dropout: dropout before the Linear layer.
        freeze_encoder: train only the head (linear probe): the encoder's parameters do not require
            gradients and it stays in eval mode (BatchNorm statistics and dropout frozen).

    Attributes:
        encoder, head: the two parts; ``state_dict`` keys are ``encoder.*`` and ``head.*``.
        cam_layer: the encoder's Grad-CAM layer seen from the classifier (``"encoder.<cam_layer>"``).
    """

    def __init__(self, encoder: nn.Module, num_classes: int, dropout: float = 0.0, freeze_encoder: bool = False):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Sequential()
        if dropout > 0:
            self.head.add_module("drop", get_dropout_layer(float(dropout), dropout_dim=1))
        self.head.add_module("fc", nn.Linear(encoder.num_features, num_classes))
        self.num_classes = num_classes
        self.cam_layer = f"encoder.{encoder.cam_layer}"
        self.freeze_encoder = freeze_encoder
        if freeze_encoder:
            self.freeze(True)

    def freeze(self, frozen: bool = True) -> None:
        """Freeze the encoder (a linear probe: no gradients, eval mode while training) or unfreeze it.

        Used by LP-FT (:class:`cryomonai.engines.LinearProbeFirst`) to switch from probing to fine-tuning.
        Unfreezing makes every encoder parameter require gradients and restores the classifier's mode.
        """
        self.freeze_encoder = bool(frozen)
        self.encoder.requires_grad_(not frozen)
        self.encoder.train(self.training and not frozen)

    def train(self, mode: bool = True) -> Classifier:
        """Set train/eval mode; a frozen encoder stays in eval mode."""
        super().train(mode)
        if self.freeze_encoder:
            self.encoder.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, C, D, H, W) → (B, F) → (B, L)
        return self.head(self.encoder(x))

    def load_encoder(self, state_dict: Mapping[str, torch.Tensor], prefix: str = "encoder.") -> None:
        """Load the encoder weights of an SSL method's or a classifier's ``state_dict``.

        Keys starting with ``prefix`` are loaded (strictly) into :attr:`encoder`; the rest (projection
        heads, momentum encoder, queue, old class layer) is ignored.

        Raises:
            CryoDataError: the checkpoint has no ``prefix`` keys or they do not match the encoder.
        """
        enc = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
        if not enc:
            raise CryoDataError("checkpoint", f"no '{prefix}*' weights", "load an SSL or classifier checkpoint")
        try:
            missing, unexpected = self.encoder.load_state_dict(enc, strict=False)
            detail = f"missing {list(missing)[:3]}, unexpected {list(unexpected)[:3]}" if missing or unexpected else ""
        except RuntimeError as err:  # a shape mismatch
            detail = str(err).strip().splitlines()[-1].strip()
        if detail:
            raise CryoDataError(
                "checkpoint",
                f"encoder weights do not match ({detail})",
                "build the classifier with the encoder (name and arguments) used for pretraining",
            )
