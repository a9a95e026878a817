"""Shipped weights: checkpoints that come with the bundle, taken by name.

The bundle's ``models/shipped/`` folder holds small checkpoints (an SSL-pretrained encoder, a
classifier fine-tuned from it) and ``weights.json``, their index::

    {"<name>": {"file": "<name>.pt", "kind": "encoder" | "classifier", "encoder": "rb3d_bn",
                "box": 16, "voxel_size": 20.0, "sha256": "…", "card": "docs/model_card.md", …}}

Wherever the bundle reads a checkpoint (``finetune``'s ``pretrained``, ``inference``'s,
``evaluate``'s and ``embed``'s ``checkpoint``) it goes through :func:`weights_file`, so a shipped
name works in place of a path: ``--pretrained simclr_rb3d_bn_16``. A shipped file has the bundle's
own checkpoint format (``{"model": state_dict, "run_info": …}``), only smaller: an encoder keeps
its ``encoder.*`` weights, a classifier its encoder and class layer; optimizer, trainer and SSL
heads are left out (:func:`compact_checkpoint`).

Example:
    >>> weights_file("", ".") is None
    True
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from cryomonai.engines.checkpoints import load_checkpoint
from cryomonai.errors import ConfigError, CryoDataError
from cryomonai.io.atomic import atomic_write
from cryomonai.layout import FINETUNE_BEST

__all__ = ["SHIPPED_DIR", "WEIGHTS_INDEX", "compact_checkpoint", "model_input", "sha256_of", "ship_weights", "shipped_weights",
           "weights_file"]

#: the folder of shipped checkpoints, relative to the bundle root
SHIPPED_DIR = "models/shipped"
#: the index of shipped checkpoints in :data:`SHIPPED_DIR`
WEIGHTS_INDEX = "weights.json"
_KINDS = ("encoder", "classifier")


def _restore(path: str | os.PathLike) -> str:
    """The fix for a shipped file that is missing or damaged: it comes back from where cryomonai came from."""
    return (f"in a checkout, restore it with `git checkout -- {path}`; installed from a wheel, reinstall "
            "cryomonai (`pip install --force-reinstall --no-deps <the wheel>`); with $CRYOMONAI_BUNDLES, copy the "
            "bundle there again")


def shipped_weights(bundle_root: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """The index of the bundle's shipped checkpoints (``{}`` when it ships none).

    Raises:
        CryoDataError: the index is not valid JSON or an entry lacks ``file`` / ``kind``.
    """
    index = Path(bundle_root) / SHIPPED_DIR / WEIGHTS_INDEX
    if not index.is_file():
        return {}
    try:
        entries = json.loads(index.read_text())
    except json.JSONDecodeError as err:
        raise CryoDataError(index, f"not valid JSON ({err.msg}, line {err.lineno})", _restore(index)) from None
    for name, entry in entries.items():
        if not isinstance(entry, Mapping) or "file" not in entry or entry.get("kind") not in _KINDS:
            raise CryoDataError(index, f"entry {name!r} needs 'file' and 'kind' ({' or '.join(_KINDS)})",
                                _restore(index))
    return entries


def model_input(checkpoint: str | os.PathLike | None, bundle_root: str | os.PathLike,
                info: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The input a checkpoint expects: ``{"name", "box", "voxel_size"}`` from the shipped index (a shipped
    name) or its run info (``info``, else read from the file), ``{}`` where neither records it.

    :func:`~cryomonai.data.picks.particle_dataset` checks its boxes against it, so a shipped 16³ / 20 Å
    classifier is not fed 32³ boxes at 10 Å without a word. The checkpoint is resolved and read here, so a
    wrong name or a foreign file fails before the dataset writes anything.

    Example:
        >>> model_input("", ".")
        {}
    """
    path = weights_file(checkpoint, bundle_root)
    if path is None:
        return {}
    if info is None:
        info = load_checkpoint(path).get("run_info") or {}
    entry = shipped_weights(bundle_root).get(str(checkpoint), {})
    found = {key: entry.get(key, info.get(key)) for key in ("box", "voxel_size")}
    return {"name": str(checkpoint), **{k: v for k, v in found.items() if v is not None}} if any(found.values()) else {}


def weights_file(checkpoint: str | os.PathLike | None, bundle_root: str | os.PathLike, kind: str | None = None) -> str | None:
    """The checkpoint file that ``checkpoint`` names: a path, or the name of shipped weights.

    Args:
        checkpoint: a path to a checkpoint, a name listed in the bundle's shipped index, or
            None/"" (no checkpoint: random weights where that is allowed).
        bundle_root: the bundle folder (its ``models/shipped/weights.json`` is the index).
        kind: ``"classifier"`` where a run needs a class layer (inference, evaluation): naming a
            shipped *encoder* there is an error with the fix.

    Returns:
        The file path (a path that does not exist is returned as given: loading it says so), or
        None for no checkpoint.

    Raises:
        ConfigError: a bare name that is neither a file nor shipped (the fix lists the shipped
            names), or shipped weights of the wrong kind.
        CryoDataError: a shipped file that is missing or altered (its SHA-256 differs from the index).
    """
    if checkpoint is None or str(checkpoint) == "":
        return None
    text = str(checkpoint)
    if Path(text).exists():
        return text
    shipped = shipped_weights(bundle_root)
    if text not in shipped:
        if os.sep in text or "/" in text or Path(text).suffix:
            return text  # a path that is not there: the loader's "checkpoint not found" names the fix
        names = ", ".join(sorted(shipped)) or "none"
        raise ConfigError(text, "neither a checkpoint file nor the name of shipped weights",
                          f"give a path to a checkpoint, or one of the shipped names: {names}")
    entry = shipped[text]
    path = Path(bundle_root) / SHIPPED_DIR / entry["file"]
    if not path.is_file():
        raise CryoDataError(path, f"the shipped weights {text!r} are missing", _restore(path))
    if entry.get("sha256") and sha256_of(path) != entry["sha256"]:
        raise CryoDataError(path, f"differs from the shipped weights {text!r} (SHA-256 mismatch)", _restore(path))
    if kind is not None and entry["kind"] != kind:
        raise ConfigError(text, f"is a shipped {entry['kind']}, and this run needs a {kind}",
                          f"fine-tune it first (--pretrained {text}), then use that run's {FINETUNE_BEST}"
                          if kind == "classifier" else f"name shipped weights of kind {kind}")
    return str(path)


def sha256_of(path: str | os.PathLike) -> str:
    """The SHA-256 of a file, hex."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def compact_checkpoint(ckpt: Mapping[str, Any], kind: str, **info: Any) -> dict[str, Any]:
    """A bundle checkpoint cut down to what shipping needs.

    Args:
        ckpt: a checkpoint of the bundle (``{"model": …, "run_info": …, "optimizer": …}``).
        kind: ``"encoder"`` keeps the ``encoder.*`` weights (an SSL method's heads, momentum
            encoder and queue go); ``"classifier"`` keeps the whole classifier.
        info: extra run-info entries (e.g. ``box``, ``voxel_size``, ``source``).

    Returns:
        ``{"model": state_dict (float32, contiguous), "run_info": dict}``.

    Raises:
        CryoDataError: ``ckpt`` has no model weights, no ``encoder.*`` weights, or no run info.
    """
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
    model, run_info = ckpt.get("model"), ckpt.get("run_info")
    if not isinstance(model, Mapping) or not isinstance(run_info, Mapping):
        raise CryoDataError("checkpoint", "has no 'model' weights or no 'run_info'", "give a checkpoint written by the bundle")
    keep = {k: v for k, v in model.items() if kind == "classifier" or k.startswith("encoder.")}
    if not any(k.startswith("encoder.") for k in keep):
        raise CryoDataError("checkpoint", "has no 'encoder.*' weights", "give a pretraining or fine-tuning checkpoint of the bundle")
    state = {k: (v.float() if v.is_floating_point() else v).contiguous().clone() for k, v in keep.items()}
    return {"model": state, "run_info": {**dict(run_info), **info}}



def ship_weights(
    name: str, checkpoint: str | os.PathLike, kind: str, bundle_root: str | os.PathLike, **info: Any
) -> Path:
    """Write a compact copy of a bundle checkpoint into the shipped folder and list it in the index.

    Args:
        name: the name runs will take it by (a file ``<name>.pt``; letters, digits, ``_`` and ``-``).
        checkpoint: a pretraining (``kind="encoder"``) or fine-tuning (``"classifier"``) checkpoint.
        kind: ``"encoder"`` or ``"classifier"`` (see :func:`compact_checkpoint`).
        bundle_root: the bundle folder.
        info: what the index and the file's run info record (``box``, ``voxel_size``, ``source`` …).

    Returns:
        The written file. Both the file and the index are replaced atomically.
    """
    if not name.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"name must be letters, digits, '_' or '-': {name!r}")
    folder = Path(bundle_root) / SHIPPED_DIR
    folder.mkdir(parents=True, exist_ok=True)
    compact = compact_checkpoint(load_checkpoint(checkpoint), kind, **info)
    path = folder / f"{name}.pt"
    with atomic_write(path) as f:
        torch.save(compact, f)
    index = shipped_weights(bundle_root)
    run_info = compact["run_info"]
    args = dict(run_info.get("encoder_args") or {})  # a non-default network (e.g. 64 channels), in the index too
    index[name] = {"file": path.name, "kind": kind, "encoder": run_info.get("encoder"),
                   **({"encoder_args": args} if args else {}), **info,
                   **({"classes": list(run_info["classes"])} if kind == "classifier" else {}),
                   "sha256": sha256_of(path)}
    with atomic_write(folder / WEIGHTS_INDEX, "w") as f:
        f.write(json.dumps(dict(sorted(index.items())), indent=2) + "\n")
    return path
