"""What the simulator makes, for a picture: per class, the clean target and the same particle at each
SNR, in each noise model (:data:`~cryomonai.simulate.imaging.NOISE_MODELS`) side by side.

The picture itself is drawn by :func:`cryomonai.visualize.preview.preview_montage`."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from cryomonai.simulate.dataset import build_simulator
from cryomonai.simulate.imaging import NOISE_MODELS, ImagingParams

__all__ = ["preview_volumes"]


def _column_title(snr: float, noise_model: str | None) -> str:
    if math.isinf(snr):
        return "SNR ∞ (no noise)"
    return f"SNR {snr:g}, {noise_model}"


def preview_volumes(
    classes: tuple[str, ...],
    snrs: tuple[float, ...] = (math.inf, 0.05, 0.03),
    noise_models: tuple[str, ...] = NOISE_MODELS,
    box: int = 32,
    seed: int = 0,
    n_neighbours: int = 4,
    imaging: ImagingParams | None = None,
) -> tuple[dict[str, list[np.ndarray]], list[str], dict[str, tuple[int, int, int]]]:
    """The montage's volumes: per class the clean target, then each SNR (``inf`` once, since it has
    no noise; each finite SNR once per noise model).

    The same particle (geometry and noise seed, drawn from ``default_rng([seed, class])``) fills
    every column, so the columns differ only by the noise level and model (``"aitom"`` also applies
    AITom's band-pass to the signal, and its SNR is AITom's nominal one).

    Returns:
        ``(grid, titles, centres)``: class → list of (box, box, box) volumes (z, y, x), one title per
        column, class → the target's centre voxel (z, y, x).
    """
    base = imaging or ImagingParams()
    sims = {m: build_simulator(classes, box, n_neighbours, 8.0, dataclasses.replace(base, noise_model=m))
            for m in noise_models}
    columns = [(s, None) for s in snrs if math.isinf(s)]  # no noise: the same in every model
    columns += [(s, m) for m in noise_models for s in snrs if not math.isinf(s)]
    grid, centres = {}, {}
    for c, name in enumerate(classes):
        rngs = [np.random.default_rng([seed, c]) for _ in columns]
        outs = [sims[m or noise_models[0]](rng, target=c, snr=float(s)) for rng, (s, m) in zip(rngs, columns)]
        grid[name] = [outs[0]["clean"]] + [o["observed"] for o in outs]
        centres[name] = tuple(int(v) for v in np.clip(np.round(box // 2 + outs[0]["shift"][::-1]), 0, box - 1))
    return grid, ["clean target"] + [_column_title(s, m) for s, m in columns], centres
