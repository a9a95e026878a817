"""The simulator's montage (``cryomonai montage``): per class, the clean target and the same particle
at each SNR and noise model, as central slices (figures only; the volumes come from
:func:`cryomonai.simulate.preview.preview_volumes`)."""

from __future__ import annotations

import math
import os
from pathlib import Path

from cryomonai.simulate.imaging import NOISE_MODELS, ImagingParams
from cryomonai.simulate.preview import preview_volumes
from cryomonai.simulate.templates import SHREC_10
from cryomonai.visualize.slices import slice_montage

__all__ = ["preview_montage"]


def preview_montage(
    path: str | os.PathLike,
    classes: tuple[str, ...] | None = None,
    snrs: tuple[float, ...] = (math.inf, 0.05, 0.03),
    box: int = 32,
    seed: int = 0,
    n_neighbours: int = 4,
    imaging: ImagingParams | None = None,
    noise_models: tuple[str, ...] = NOISE_MODELS,
) -> Path:
    """Write the simulator's PNG montage (rows = classes; columns =
    :func:`~cryomonai.simulate.preview.preview_volumes`; xy/xz/yz slices).

    Slices go through the target's (shifted) centre.
    """
    classes = tuple(classes or SHREC_10)
    grid, titles, centres = preview_volumes(classes, snrs, noise_models, box, seed, n_neighbours, imaging)
    title = (f"cryomonai simulator: {box}³ subtomograms at 10 Å/voxel, crowded by ≤{n_neighbours} neighbours, "
             "CTF (−5 µm) + ±60° wedge; slices through the target.\nNoise models: split = half before, half "
             "after the CTF (default); filtered = all before CTF·wedge (both: SNR = box variance ratio); "
             "aitom = AITom's do_reconstruction (SNR = its nominal SNR)")
    return slice_montage(grid, titles, path, title=title, centres=centres)
