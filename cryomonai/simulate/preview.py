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
    shown at every SNR, so the columns differ only by the noise level. Slices go through the
    target's (shifted) centre.
    """
    from cryomonai.simulate.dataset import build_simulator
    from cryomonai.simulate.templates import SHREC_10
    from cryomonai.visualize.slices import slice_montage

    classes = tuple(classes or SHREC_10)
    sim = build_simulator(classes, box, n_neighbours, 8.0, imaging or ImagingParams())
    grid, centres = {}, {}
    for c, name in enumerate(classes):
        outs = [sim(np.random.default_rng([seed, c]), target=c, snr=float(s)) for s in snrs]
        grid[name] = [outs[0]["clean"]] + [o["observed"] for o in outs]
        centres[name] = tuple(int(v) for v in np.clip(np.round(box // 2 + outs[0]["shift"][::-1]), 0, box - 1))
    titles = ["clean target"] + [f"SNR {s:g}" if math.isfinite(s) else "SNR ∞" for s in snrs]
    title = (f"cryomonai simulator: {box}³ subtomograms at 10 Å/voxel, crowded by ≤{n_neighbours} neighbours, "
             "CTF (−5 µm) + ±60° wedge; slices through the target")
    return slice_montage(grid, titles, path, title=title, centres=centres)
