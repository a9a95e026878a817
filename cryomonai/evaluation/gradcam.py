"""3D Grad-CAM of fine-tuned classifiers: which voxels a class decision rests on (paper's Figure 8).

Gupta et al. (2022, Figure 8) compare Grad-CAM maps (Selvaraju et al. 2017; made with M3d-CAM) of a
MoCo-pretrained and a randomly initialised classifier on the same subtomogram: the pretrained one
attends to wider regions. Here the maps come from MONAI's :class:`monai.visualize.GradCAM` on the
classifier's ``cam_layer`` (``"encoder.features.block4"`` for RB3D: the last bottleneck block, at
half the input resolution), trilinearly upsampled to the input box and scaled to [0, 1] per volume.

Two details of MONAI's class that matter here, handled by :func:`gradcam_volumes`:

* its default post-processing maps (min, max) to (1, 0), i.e. *inverts* the map; we scale to
  (0, 1) instead (MONAI's ``rescale_instance_array``), so 1 = most important;
* with ``class_idx=None`` and a batch whose samples have different argmax classes, MONAI's score
  ``logits[:, class_idx]`` mixes the classes of all samples; we run one class at a time.

It also registers hooks it never removes, so it runs on a copy of the classifier (the caller's
model is left as it was), with the input requiring gradients so a frozen encoder
(``requires_grad=False``, a linear probe) still has a gradient at the target layer.

Volumes are ``(N, 1, D, H, W)`` = (N, 1, z, y, x); maps are ``(N, D, H, W)``, drawn over the
subtomograms by :func:`cryomonai.visualize.gradcam.plot_gradcam_overlays`.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.transforms.utils import rescale_instance_array
from monai.visualize import GradCAM
from torch import nn

from cryomonai.engines.checkpoints import load_checkpoint
from cryomonai.engines.network import build_network
from cryomonai.errors import ConfigError, CryoDataError
from cryomonai.layout import FINETUNE_BEST
from cryomonai.networks import Classifier

__all__ = ["as_volumes", "gradcam_volumes", "load_finetuned_classifier"]


def _unit_range(maps: torch.Tensor) -> np.ndarray:
    """(B, 1, *S) maps → numpy, each map min-max scaled to [0, 1] (a constant map → 0)."""
    return rescale_instance_array(maps.detach().float().cpu().numpy(), 0.0, 1.0)


def as_volumes(volumes: torch.Tensor | np.ndarray, where: str) -> torch.Tensor:
    """(N, 1, D, H, W) float tensor from a tensor or array of that shape (or (N, D, H, W)); finite values.

    Raises:
        CryoDataError: another shape, no volume, or NaN/Inf (``where`` names the caller).
    """
    x = torch.as_tensor(np.asarray(volumes) if isinstance(volumes, np.ndarray) else volumes).float()
    if x.ndim == 4:
        x = x[:, None]
    if x.ndim != 5 or x.shape[1] != 1 or x.shape[0] == 0:
        raise CryoDataError(where, f"expected volumes (N, 1, D, H, W), got shape {tuple(x.shape)}",
                            "stack subtomograms as a (N, 1, z, y, x) tensor")
    if not torch.isfinite(x).all():
        raise CryoDataError(where, "volumes contain NaN/Inf", "check the subtomograms (normalisation, extraction)")
    return x


def _class_indices(model: nn.Module, x: torch.Tensor, class_idx: int | Sequence[int] | None, batch: int) -> np.ndarray:
    """The class each volume's map explains: ``class_idx`` (one or per volume), else the predicted class."""
    if class_idx is None:
        with torch.no_grad():
            logits = torch.cat([model(x[i : i + batch]) for i in range(0, len(x), batch)])
        return logits.argmax(dim=1).cpu().numpy()
    idx = np.broadcast_to(np.asarray(class_idx, dtype=int), (len(x),)).copy()
    n_classes = getattr(model, "num_classes", None)
    if (idx < 0).any() or (n_classes is not None and (idx >= n_classes).any()):
        raise ConfigError("Grad-CAM", f"class_idx {sorted(set(idx.tolist()))} out of range 0..{n_classes}",
                          "give class indices of the classifier's classes")
    return idx


def gradcam_volumes(
    classifier: nn.Module,
    volumes: torch.Tensor | np.ndarray,
    class_idx: int | Sequence[int] | None = None,
    target_layer: str | None = None,
    batch_size: int = 8,
) -> np.ndarray:
    """3D Grad-CAM maps of ``volumes`` (N, 1, D, H, W) for ``classifier``: ``(N, D, H, W)`` in [0, 1].

    Args:
        classifier: a :class:`~cryomonai.networks.Classifier` (or any ``(B, 1, D, H, W) → (B, L)``
            module); it is copied, put in eval mode on the copy, and left untouched.
        volumes: subtomograms (z, y, x); moved to the classifier's device.
        class_idx: the class explained: one index for all, one per volume, or ``None`` for each
            volume's predicted class.
        target_layer: dotted module name of the layer whose activations and gradients make the
            map; default ``classifier.cam_layer``.
        batch_size: volumes per forward/backward pass.

    Returns:
        float32 maps, trilinearly upsampled to (D, H, W), each min-max scaled to [0, 1] (1 = most
        important; an all-zero map, e.g. no positive evidence, stays 0).

    Raises:
        CryoDataError: bad volumes.
        ConfigError: unknown target layer, or class index out of range.
    """
    layer = target_layer or getattr(classifier, "cam_layer", None)
    if layer is None or layer not in dict(classifier.named_modules()):
        raise ConfigError("Grad-CAM", f"target layer {layer!r} not found in the model",
                          "pass target_layer, a name from model.named_modules() (e.g. the encoder's cam_layer)")
    model = copy.deepcopy(classifier).eval()  # MONAI's hooks stay on the copy
    param = next(model.parameters(), None)
    x = as_volumes(volumes, "Grad-CAM").to(param.device if param is not None else "cpu")
    classes = _class_indices(model, x, class_idx, batch_size)
    cam = GradCAM(nn_module=model, target_layers=layer, postprocessing=_unit_range)
    out = np.zeros((len(x), *x.shape[2:]), dtype=np.float32)
    with torch.enable_grad():
        for c in np.unique(classes):  # one class per pass: MONAI sums the score of class_idx over the batch
            members = np.flatnonzero(classes == c)
            for start in range(0, len(members), batch_size):
                rows = members[start : start + batch_size]
                xb = x[torch.as_tensor(rows, device=x.device)].detach().requires_grad_(True)  # frozen encoder too
                out[rows] = cam(xb, class_idx=int(c))[:, 0]
    return out


def load_finetuned_classifier(
    checkpoint: str | os.PathLike, map_location: Any = "cpu", **encoder_kwargs: Any
) -> tuple[nn.Module, list[str]]:
    """A fine-tuned classifier (eval mode) and its class names from a ``models/finetune_best.pt``.

    The checkpoint's ``"run_info"`` names the encoder, the arguments it was built with (``"encoder_args"``,
    e.g. ``channels=64``; saved since bundle 0.8.2) and the classes; ``encoder_kwargs`` add to or replace
    those arguments (for an older checkpoint, the non-default ones of its run).

    Raises:
        CryoDataError: not a checkpoint, or no run info.
        ConfigError: weights that do not fit the encoder arguments.
    """
    ckpt = load_checkpoint(checkpoint, map_location)
    info, state = ckpt.get("run_info"), ckpt.get("model")
    if not (isinstance(info, Mapping) and {"encoder", "classes"} <= set(info) and isinstance(state, Mapping)):
        raise CryoDataError(checkpoint, "lacks 'model' weights or 'run_info' with 'encoder' and 'classes'",
                            f"give the models/{FINETUNE_BEST} of a fine-tuning run")
    classes = [str(c) for c in info["classes"]]
    model = Classifier(build_network(str(info["encoder"]), checkpoint, **encoder_kwargs), len(classes))
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[-1].strip()
        raise ConfigError(checkpoint, f"weights do not fit {info['encoder']!r} ({first})",
                          "pass the encoder arguments used for fine-tuning as keyword arguments") from None
    return model.eval(), classes
