"""The encoder a bundle run builds: the one its checkpoint was trained with.

A checkpoint's run info records the arguments its encoder was built with (``encoder_args``, e.g.
``{"channels": 64}``). ``common.json``'s ``network_def`` builds through :func:`build_network` with the
checkpoint the run starts from (``network_checkpoint``: the pretrained encoder for ``finetune``, the
classifier for ``evaluate`` and ``inference``, the encoder for ``embed``), so a 64-channel model is
evaluated, classified with and fine-tuned from without ``--network_def#channels 64`` being given again.
Arguments given in the run's config (``network_def#...``) win over the saved ones.
"""

from __future__ import annotations

import os
from typing import Any

from torch import nn

from cryomonai.engines.checkpoints import load_checkpoint
from cryomonai.networks import build_encoder

__all__ = ["build_network", "saved_encoder_args"]


def saved_encoder_args(checkpoint: str | os.PathLike | None, name: str) -> dict[str, Any]:
    """The ``encoder_args`` saved in ``checkpoint``'s run info, if it was trained with encoder ``name``
    (``{}`` for no checkpoint, one without them, or another encoder: loading it then says what is wrong)."""
    if not checkpoint:
        return {}
    info = load_checkpoint(checkpoint).get("run_info")
    if not isinstance(info, dict) or info.get("encoder", name) != name:
        return {}
    return dict(info.get("encoder_args") or {})


def build_network(name: str, checkpoint: str | os.PathLike | None = None, **kwargs: Any) -> nn.Module:
    """Encoder ``name`` built with ``checkpoint``'s saved arguments, updated by ``kwargs``.

    Example:
        >>> build_network("rb3d", None, channels=16).num_features
        128
    """
    return build_encoder(name, **{**saved_encoder_args(checkpoint, name), **kwargs})
