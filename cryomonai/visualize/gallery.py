"""A per-cluster gallery of central slices: what the particles of each cluster look like.

Figures only. Volumes are (z, y, x): each cell shows the central ``xy`` slice (perpendicular to the
beam) above the central ``xz`` slice (the missing-wedge elongation along z shows there).

* :func:`cluster_gallery` — any rows of volumes;
* :func:`nearest_members_gallery` — the ``embed`` run's ``gallery.png``: the particles nearest each
  cluster centre (:class:`~cryomonai.evaluation.embedding.Clusters`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from cryomonai.evaluation.embedding import Clusters
from cryomonai.visualize.figure import save_png

__all__ = ["cluster_gallery", "nearest_members_gallery"]


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
    rows = list(volumes)
    n_cols = max([len(v) for v in volumes.values()] + [1])
    fig = Figure(figsize=(n_cols * 0.9 + 1.2, len(rows) * 1.6 + 0.5))
    axes = fig.subplots(len(rows), n_cols, squeeze=False)
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


def nearest_members_gallery(
    path: str | os.PathLike, clusters: Clusters, rows: np.ndarray, dataset: Any, per_cluster: int = 8
) -> Path:
    """Write :func:`cluster_gallery` of the ``per_cluster`` members nearest each cluster centre.

    Args:
        path: output PNG (written atomically; folder created).
        clusters: the clusters of the particles ``rows`` (same order).
        rows: (N,) table row of each clustered particle.
        dataset: the MONAI dataset the features came from; its items have ``"index"`` (the table
            row) and a (1, D, H, W) ``"image"``, read back for the members shown.
        per_cluster: members shown per cluster (the nearest to the centre first).
    """
    labels, dist = clusters.labels, clusters.distance
    position = {int(item["index"]): pos for pos, item in enumerate(dataset.data)}
    volumes = {}
    for c, name in enumerate(clusters.names):
        members = np.flatnonzero(labels == c)
        nearest = members[np.argsort(dist[members], kind="stable")[:per_cluster]]
        images = [dataset[position[int(rows[i])]]["image"] for i in nearest]  # (1, D, H, W) each
        volumes[f"{name} (n={len(members)})"] = [np.asarray(torch.as_tensor(im).detach().cpu())[0] for im in images]
    return cluster_gallery(volumes, path, title="particles nearest each cluster centre: central xy above xz")
