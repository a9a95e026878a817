"""Encoders (RB3D, MONAI nets) behind one registry, MLP heads and the fine-tuning classifier.

See :mod:`cryomonai.networks.registry` for the encoder interface
(``forward(x) → (B, F)``, ``num_features``, ``cam_layer``).
"""

from cryomonai.networks.heads import Classifier, MLPHead
from cryomonai.networks.monai_nets import densenet121, resnet10
from cryomonai.networks.rb3d import RB3D, RB3DBlock, RB3DOriginal
from cryomonai.networks.registry import ENCODERS, build_encoder, encoder_args

__all__ = [
    "ENCODERS",
    "RB3D",
    "Classifier",
    "MLPHead",
    "RB3DBlock",
    "RB3DOriginal",
    "build_encoder",
    "densenet121",
    "encoder_args",
    "resnet10",
]
