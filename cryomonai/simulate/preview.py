"""A picture of what the simulator makes: per class, the clean target and the same particle at each SNR."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from cryomonai.simulate.imaging import ImagingParams

__all__ = ["preview_montage"]


def preview_montage(
    path: str | os.PathLike,
    classes: tuple[str, ...] | None = None,
    snrs: tuple[float, ...] = (math.inf, 0.05, 0.03),
    box: int = 32,
    seed: int = 0,
    n_neighbours: int = 4,
    imaging: ImagingParams | None = None,
) -> Path:
    """Write a PNG montage (rows = classes; columns = clean density, then each SNR; xy/xz/yz slices).

    The same particle (geometry and noise pattern, drawn from ``default_rng([seed, class])``) is
    shown at every SNR, so the columns differ only by the noise level.
    """
    from cryomonai.simulate.dataset import build_simulator
    from cryomonai.simulate.templates import SHREC_10
    from cryomonai.visualize.slices import slice_montage

    classes = tuple(classes or SHREC_10)
    sim = build_simulator(classes, box, n_neighbours, 8.0, imaging or ImagingParams())
    grid = {}
    for c, name in enumerate(classes):
        outs = [sim(np.random.default_rng([seed, c]), target=c, snr=float(s)) for s in snrs]
        grid[name] = [outs[0]["clean"]] + [o["observed"] for o in outs]
    titles = ["clean target"] + [f"SNR {s:g}" if math.isfinite(s) else "SNR ∞" for s in snrs]
    title = f"cryomonai simulator: {box}³ subtomograms, crowded by {n_neighbours} neighbours, CTF + ±60° wedge"
    return slice_montage(grid, titles, path, title=title)
