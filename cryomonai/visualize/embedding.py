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
        markers: optional second label per particle (e.g. the input's true class), shown by marker
            shape with its own legend (ignored when there are more than 10 kinds).
        dpi: resolution.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cryomonai.visualize.figure import save_png

    from matplotlib.lines import Line2D

    coords, groups = np.asarray(coords, dtype=float).reshape(-1, 2), np.asarray(groups, dtype=int)
    cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    kinds = sorted(set(markers)) if markers is not None else []
    if len(kinds) > len(_MARKERS):  # too many to tell apart: colour only
        kinds, markers = [], None
    shape = np.array([kinds.index(m) for m in markers]) if markers is not None else np.zeros(len(coords), int)
    fig, ax = plt.subplots(figsize=(6.8, 5.2))
    for g in range(len(names)):
        for m in range(max(len(kinds), 1)):
            sel = (groups == g) & (shape == m)
            if sel.any():
                ax.scatter(coords[sel, 0], coords[sel, 1], s=20, color=cmap(g % cmap.N), marker=_MARKERS[m],
                           edgecolors="none", alpha=0.85)
    ax.set_xticks([]), ax.set_yticks([])
    colours = [Line2D([], [], ls="", marker="o", color=cmap(g % cmap.N), label=n) for g, n in enumerate(names)]
    first = ax.legend(handles=colours, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    if kinds:
        ax.add_artist(first)
        shapes = [Line2D([], [], ls="", marker=_MARKERS[m], color="0.3", label=k) for m, k in enumerate(kinds)]
        ax.legend(handles=shapes, fontsize=7, loc="lower left", bbox_to_anchor=(1.01, 0.0), frameon=False,
                  title="marker", title_fontsize=7)
    ax.set_title(title or f"{len(coords)} particles", fontsize=9)
    fig.tight_layout()
    return save_png(fig, path, dpi=dpi)
