"""The bundle overrides that shape a grid run's network (``network_def#...``, ``classifier#...``).

A preset may set them for every run (``common``) or per recipe (e.g. ``"network_def#channels": 64``); what
rebuilds a trained model (evaluation, the readouts' random features) must build the same network.
"""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["encoder_kwargs", "network_keys"]


def network_keys(overrides: dict[str, Any]) -> dict[str, Any]:
    """The bundle overrides among ``overrides`` that shape the network (``network_def``, ``network_def#...``,
    ``classifier#...``): what a run that rebuilds a fine-tuned model must be given as well.

    Example:
        >>> network_keys({"lr": 0.01, "network_def#channels": 64, "classifier#dropout": 0.2})
        {'network_def#channels': 64, 'classifier#dropout': 0.2}
    """
    return {k: copy.deepcopy(v) for k, v in overrides.items()
            if k == "network_def" or k.startswith(("network_def#", "classifier#"))}


def encoder_kwargs(overrides: dict[str, Any]) -> dict[str, Any]:
    """The encoder's keyword arguments set by ``overrides``' ``network_def#<name>`` keys.

    Example:
        >>> encoder_kwargs({"lr": 0.01, "network_def#channels": 64})
        {'channels': 64}
    """
    return {k.split("#", 1)[1]: copy.deepcopy(v) for k, v in overrides.items()
            if k.startswith("network_def#") and k.count("#") == 1}
