"""A per-cluster gallery of central slices: what the particles of each cluster look like.

Figures only. Volumes are (z, y, x): each cell shows the central ``xy`` slice (perpendicular to the
beam) above the central ``xz`` slice (the missing-wedge elongation along z shows there).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

__all__ = ["cluster_gallery"]


def _cell(vol: np.ndarray) -> np.ndarray:
    """(z, y, x) → (y + z, x): the central xy slice above the central xz slice, each scaled to [0, 1]."""
    d, h, _ = vol.shape

    def scale(img: np.ndarray) -> np.ndarray:
        lo, hi = np.percentile(img, [1, 99])
        return np.clip((img - lo) / (hi - lo), 0, 1) if hi > lo else np.zeros_like(img)

    return np.concatenate([scale(vol[d // 2]), scale(vol[:, h // 2, :])], axis=0)


def cluster_gallery(
    volumes: Mapping[str, Sequence[np.ndarray]],
    path: str | os.PathLike,
    title: str = "",
    dpi: int = 100,
) -> Path:
    """Write a PNG with one row per cluster and one column per member shown.

    Args:
        volumes: row label (e.g. ``"cluster 1 (n=42)"``) → the members' volumes (z, y, x) to show
            (e.g. the ones nearest the cluster centre); rows may have different lengths.
        path: output PNG (written atomically; folder created).
        title: figure title.
        dpi: resolution.

    Example:
        >>> import tempfile, pathlib
        >>> out = cluster_gallery({"a": [np.random.default_rng(0).normal(size=(8, 8, 8))] * 2, "b": []},
        ...                       pathlib.Path(tempfile.mkdtemp()) / "g.png")
        >>> out.stat().st_size > 0
        True
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cryomonai.visualize.figure import save_png

    rows = list(volumes)
    n_cols = max([len(v) for v in volumes.values()] + [1])
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(n_cols * 0.9 + 1.2, len(rows) * 1.6 + 0.5), squeeze=False)
    for r, name in enumerate(rows):
        for c in range(n_cols):
            ax = axes[r, c]
            ax.set_xticks([]), ax.set_yticks([])
            if c < len(volumes[name]):
                ax.imshow(_cell(np.asarray(volumes[name][c], dtype=np.float32)), cmap="gray", interpolation="nearest")
            else:
                ax.axis("off")
        axes[r, 0].axis("on")
        axes[r, 0].set_ylabel(name, fontsize=7)
    fig.suptitle(title or "central slices per cluster (xy above xz)", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()))  # room for the title
    return save_png(fig, path, dpi=dpi)
