"""Orthogonal central slices of volumes as PNG montages (figures only; no computation here).

Volumes are (z, y, x): the ``xy`` slice is the central z-plane (perpendicular to the beam), ``xz``
and ``yz`` show the missing-wedge elongation along z.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from cryomonai.visualize.figure import save_png

__all__ = ["PLANES", "central_slices", "slice_montage"]

PLANES = ("xy", "xz", "yz")


def central_slices(vol: np.ndarray, centre: tuple[int, int, int] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``xy``, ``xz`` and ``yz`` slices of a (z, y, x) volume through ``centre`` (z, y, x; default the box centre)."""
    z, y, x = centre if centre is not None else tuple(n // 2 for n in vol.shape)
    return vol[z], vol[:, y], vol[:, :, x]


def slice_montage(
    grid: dict[str, list[np.ndarray]],
    column_titles: list[str],
    path: str | os.PathLike,
    title: str = "",
    dpi: int = 100,
    centres: dict[str, tuple[int, int, int]] | None = None,
) -> Path:
    """Write a PNG: one row per key of ``grid``, and for each volume of the row its xy/xz/yz slices.

    Args:
        grid: row label → list of (z, y, x) volumes (same count per row).
        column_titles: one title per volume column (e.g. "clean", "SNR 0.05").
        path: output PNG (written atomically).
        title: figure title.
        dpi: resolution.
        centres: row label → (z, y, x) voxel the row's slices go through (default: box centres).
    """
    rows = list(grid)
    n_cols = len(column_titles) * 3
    fig = Figure(figsize=(n_cols * 0.9, len(rows) * 0.95 + 0.6))
    axes = fig.subplots(len(rows), n_cols, squeeze=False)
    for r, name in enumerate(rows):
        for c, vol in enumerate(grid[name]):
            centre = (centres or {}).get(name)
            for k, sl in enumerate(central_slices(np.asarray(vol, dtype=np.float32), centre)):
                ax = axes[r, 3 * c + k]
                lo, hi = np.percentile(sl, [1, 99])
                ax.imshow(sl, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1, interpolation="nearest")
                ax.set_xticks([]), ax.set_yticks([])
                if r == 0:
                    ax.set_title(f"{column_titles[c]}\n{PLANES[k]}" if k == 1 else PLANES[k], fontsize=7)
        axes[r, 0].set_ylabel(name, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save_png(fig, path, dpi=dpi)
