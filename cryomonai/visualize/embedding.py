"""Embedding maps: 2D coordinates of encoder features (t-SNE / PCA) as a scatter PNG.

Figures only: the coordinates come from :func:`cryomonai.evaluation.embedding.embedding_2d`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["plot_embedding"]

_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")


def plot_embedding(
    coords: np.ndarray,
    groups: Sequence[int] | np.ndarray,
    names: Sequence[str],
    path: str | os.PathLike,
    title: str = "",
    markers: Sequence[str] | None = None,
    dpi: int = 110,
) -> Path:
    """Write a scatter plot of ``coords`` (N, 2), coloured by ``groups`` (N,) ∈ 0..len(names)-1.

    Args:
        coords: 2D map of the particles (t-SNE or PCA of their features).
        groups: colour index per particle (predicted class or cluster).
        names: legend name of each colour.
        path: output PNG (written atomically; folder created).
        title: figure title (e.g. ``"t-SNE of encoder features"``).
        markers: optional second label per particle (e.g. the input's true class), shown by marker shape.
        dpi: resolution.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cryomonai.io.atomic import atomic_write

    coords, groups = np.asarray(coords, dtype=float).reshape(-1, 2), np.asarray(groups, dtype=int)
    cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    kinds = sorted(set(markers)) if markers is not None else [None]
    fig, ax = plt.subplots(figsize=(6.4, 5.2))
    for g, name in enumerate(names):
        for m, kind in enumerate(kinds):
            sel = groups == g
            if markers is not None:
                sel &= np.asarray(markers, dtype=object) == kind
            if sel.any():
                label = name if markers is None else f"{name} / {kind}"
                ax.scatter(coords[sel, 0], coords[sel, 1], s=18, color=cmap(g % cmap.N), marker=_MARKERS[m % len(_MARKERS)],
                           label=label, edgecolors="none", alpha=0.85)
    ax.set_xticks([]), ax.set_yticks([])
    ax.legend(fontsize=7, markerscale=1.2, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False,
              title="colour / marker" if markers is not None else None, title_fontsize=7)
    ax.set_title(title or f"{len(coords)} particles", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=dpi)
    plt.close(fig)
    return path
