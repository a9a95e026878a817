"""3D Grad-CAM maps over subtomograms, as in the paper's Figure 8 (figures only).

The maps come from :func:`cryomonai.evaluation.gradcam.gradcam_volumes`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from cryomonai.evaluation.gradcam import as_volumes
from cryomonai.visualize.figure import save_png
from cryomonai.visualize.slices import PLANES, central_slices

__all__ = ["plot_gradcam_overlays"]


def plot_gradcam_overlays(
    volumes: torch.Tensor | np.ndarray,
    cams_by_model: Mapping[str, np.ndarray],
    labels: Sequence[int] | np.ndarray,
    class_names: Sequence[str],
    path: str | os.PathLike,
    predictions_by_model: Mapping[str, Sequence[int]] | None = None,
    alpha: float = 0.45,
    dpi: int = 110,
) -> Path:
    """PNG grid like the paper's Figure 8: Grad-CAM of several models over the same subtomograms.

    Rows = subtomograms (labelled by true class); for each model three columns, the central ``xy``
    (z-plane), ``xz`` and ``yz`` slices (:func:`~cryomonai.visualize.slices.central_slices`) of the
    volume in grey (1–99 percentile) with the model's map as a semi-transparent ``jet`` overlay
    (0–1).

    Args:
        volumes: (N, 1, D, H, W) or (N, D, H, W) subtomograms (z, y, x).
        cams_by_model: model name (e.g. ``"MoCo"``, ``"Random init"``) → maps (N, D, H, W) in [0, 1]
            from :func:`~cryomonai.evaluation.gradcam.gradcam_volumes`.
        labels: true class index per volume (N,).
        class_names: class names by index.
        path: output PNG (atomic; folder created).
        predictions_by_model: optional model name → predicted class per volume, shown in its panel.
        alpha: opacity of the map.
        dpi: resolution.
    """
    vols = as_volumes(volumes, "Grad-CAM figure")[:, 0].cpu().numpy()  # (N, D, H, W)
    labels = np.asarray(labels, dtype=int).reshape(-1)
    for name, cams in cams_by_model.items():
        if np.shape(cams) != vols.shape or len(labels) != len(vols):
            raise ValueError(f"Grad-CAM figure {name!r}: maps {np.shape(cams)}, labels {len(labels)} for "
                             f"volumes {vols.shape} (give one map (D, H, W) and one label per volume)")
    models = list(cams_by_model)
    n_cols = 3 * len(models)
    fig = Figure(figsize=(1.25 * n_cols + 0.6, 1.3 * len(vols) + 0.7))
    axes = fig.subplots(len(vols), n_cols, squeeze=False)
    for r, vol in enumerate(vols):
        for m, name in enumerate(models):
            cam_slices = central_slices(np.asarray(cams_by_model[name][r], dtype=np.float32))
            for k, (img, heat) in enumerate(zip(central_slices(vol), cam_slices)):
                ax = axes[r, 3 * m + k]
                lo, hi = np.percentile(img, [1, 99])
                ax.imshow(img, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1, interpolation="nearest")
                ax.imshow(heat, cmap="jet", alpha=alpha, vmin=0.0, vmax=1.0, interpolation="bilinear")
                ax.set_xticks([]), ax.set_yticks([])
                if r == 0:
                    ax.set_title(f"{name}\n{PLANES[k]}" if k == 1 else PLANES[k], fontsize=7)
            if predictions_by_model is not None and name in predictions_by_model:
                pred = int(np.asarray(predictions_by_model[name])[r])
                axes[r, 3 * m].text(0.02, 0.02, f"pred {class_names[pred]}", transform=axes[r, 3 * m].transAxes,
                                    fontsize=5, color="white", va="bottom")
        axes[r, 0].set_ylabel(class_names[labels[r]], fontsize=7)
    fig.suptitle("Grad-CAM (jet, 0–1) over central slices", fontsize=9)
    fig.tight_layout()
    return save_png(fig, path, dpi=dpi)
