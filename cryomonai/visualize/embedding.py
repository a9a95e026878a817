"""Embedding maps: 2D coordinates of encoder features (t-SNE / PCA) as scatter PNGs.

Figures only: the coordinates come from :func:`cryomonai.evaluation.embedding.embedding_2d`.

* :func:`plot_embedding` — one map, coloured by class or cluster (optionally a second label as marker);
* :func:`write_embedding_map` — features → their map → :func:`plot_embedding` (the bundle's
  ``inference`` and ``embed`` runs write ``embedding.png`` with it);
* :func:`plot_embeddings_before_after` — the same particles under two encoders (random init vs
  pretrained), side by side.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from cryomonai.evaluation.embedding import embedding_2d
from cryomonai.visualize.figure import save_png

__all__ = ["plot_embedding", "plot_embeddings_before_after", "write_embedding_map"]

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
    coords, groups = np.asarray(coords, dtype=float).reshape(-1, 2), np.asarray(groups, dtype=int)
    cmap = colormaps["tab10" if len(names) <= 10 else "tab20"]
    kinds = sorted(set(markers)) if markers is not None else []
    if len(kinds) > len(_MARKERS):  # too many to tell apart: colour only
        kinds, markers = [], None
    shape = np.array([kinds.index(m) for m in markers]) if markers is not None else np.zeros(len(coords), int)
    fig = Figure(figsize=(6.8, 5.2))
    ax = fig.subplots()
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


def write_embedding_map(
    path: str | os.PathLike,
    features: np.ndarray,
    groups: Sequence[int] | np.ndarray | None = None,
    names: Sequence[str] | None = None,
    method: str = "tsne",
    seed: int = 0,
    markers: Sequence[str] | None = None,
    probabilities: np.ndarray | None = None,
) -> Path:
    """Write the 2D map of ``features`` as a PNG, coloured by ``groups`` (or by the argmax of
    ``probabilities`` (N, L), e.g. a classifier's), with ``names`` in the legend."""
    if groups is None:
        groups = np.zeros(len(features), int) if probabilities is None else np.asarray(probabilities).argmax(axis=1)
    groups = np.asarray(groups, dtype=int)
    names = list(names) if names is not None else [str(g + 1) for g in range(int(groups.max(initial=0)) + 1)]
    coords = embedding_2d(features, method, seed)
    title = f"{'t-SNE' if method == 'tsne' else 'PCA'} of encoder features, {len(coords)} particles"
    return plot_embedding(coords, groups, names, path, title=title, markers=markers)


def plot_embeddings_before_after(
    features_before: np.ndarray,
    features_after: np.ndarray,
    labels: Sequence[int] | np.ndarray,
    class_names: Sequence[str],
    path: str | os.PathLike,
    method: str = "tsne",
    seed: int = 0,
    titles: tuple[str, str] = ("random-init encoder", "pretrained encoder"),
    dpi: int = 110,
) -> Path:
    """PNG with two 2D maps of the same particles: features (N, F) of the random-init and pretrained encoders.

    The maps come from :func:`cryomonai.evaluation.embedding.embedding_2d` (``method`` ``"tsne"`` or
    ``"pca"``, L2-normalised features); points are coloured by ``labels`` (N,) ∈ 0..L-1, named by
    ``class_names``. (:func:`plot_embedding` draws one map per file, so the two panels are drawn here.)
    """
    labels = np.asarray(labels, dtype=int).reshape(-1)
    if len(features_before) != len(labels) or len(features_after) != len(labels):
        raise ValueError(f"embeddings: {len(features_before)} and {len(features_after)} feature rows for "
                         f"{len(labels)} labels (embed the same particles with both encoders)")
    cmap = colormaps["tab10" if len(class_names) <= 10 else "tab20"]
    fig = Figure(figsize=(9.5, 4.3))
    axes = fig.subplots(1, 2)
    for ax, feats, name in zip(axes, (features_before, features_after), titles):
        xy = embedding_2d(feats, method, seed)  # (N, 2)
        for c, cname in enumerate(class_names):
            sel = labels == c
            ax.scatter(xy[sel, 0], xy[sel, 1], s=14, color=cmap(c % cmap.N), label=cname, edgecolors="none", alpha=0.85)
        ax.set_xticks([]), ax.set_yticks([])
        ax.set_title(f"{name} ({'t-SNE' if method == 'tsne' else 'PCA'}, {len(labels)} particles)", fontsize=9)
    axes[1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    return save_png(fig, path, dpi=dpi)
