"""A whole synthetic tomogram with particles at known coordinates (for testing extraction/inference).

Particles of the chosen classes are placed at uniformly random, non-overlapping positions
(bounding spheres, fully inside the volume) with uniformly random rotations, summed into one map,
and imaged with the same model as the subtomograms (band-pass, CTF, missing wedge, noise). The SNR is
measured as the mean signal variance in ``box³`` cubes around the particles, so a subtomogram
extracted at a pick has the SNR of a simulated subtomogram at the same nominal SNR.

Written to ``out_dir``: ``tomogram.mrc`` (float32, voxel size in the header), ``particles.star``
(``rlnMicrographName``, ``rlnCoordinateX/Y/Z`` in voxels — the particle centre's x, y, z index —,
``rlnClassNumber`` (1-based), ``rlnAngleRot/Tilt/Psi``, plus a ``data_classes`` block with the
names), the same as ``particles.csv``, and ``tomogram.json`` with the parameters.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cryomonai.errors import ConfigError
from cryomonai.io.atomic import atomic_write
from cryomonai.io.mrc import write_mrc
from cryomonai.io.table import write_particle_table
from cryomonai.simulate.geometry import euler_zyz, random_rotations
from cryomonai.simulate.imaging import ImagingParams, imaged_noise, imaged_signal
from cryomonai.simulate.subtomogram import place_templates
from cryomonai.simulate.templates import SHREC_10, load_templates, template_radius

__all__ = ["place_particles", "simulate_tomogram"]


def place_particles(
    rng: np.random.Generator, shape: tuple[int, int, int], radii: np.ndarray, n: int, max_tries: int = 200
) -> tuple[np.ndarray, np.ndarray]:
    """Random non-overlapping sphere centres inside ``shape`` (z, y, x).

    Args:
        rng: random generator.
        shape: volume shape (z, y, x).
        radii: (C,) radius per class; classes are drawn cyclically ``i % C`` (balanced).
        n: number of particles wanted.
        max_tries: attempts per particle before it is left out.

    Returns:
        ``(centres_zyx, classes)``: (m, 3) integer centres and (m,) class indices, m ≤ n.
    """
    centres, classes, rads = [], [], []
    size = np.asarray(shape, dtype=float)
    for i in range(n):
        c_idx, r = i % len(radii), float(radii[i % len(radii)])
        for _ in range(max_tries):
            c = np.round(rng.uniform(r, size - 1 - r))
            if not centres or np.all(np.linalg.norm(np.asarray(centres) - c, axis=1) >= np.asarray(rads) + r):
                centres.append(c), classes.append(c_idx), rads.append(r)
                break
    return np.asarray(centres, dtype=int).reshape(-1, 3), np.asarray(classes, dtype=int)


def simulate_tomogram(
    out_dir: str | os.PathLike,
    shape: tuple[int, int, int] = (128, 256, 256),
    n_particles: int = 100,
    snr: float = 0.05,
    classes: tuple[str, ...] | None = None,
    box: int = 32,
    seed: int = 0,
    imaging: ImagingParams | dict | None = None,
    overwrite: bool = False,
) -> Path:
    """Simulate a tomogram (z, y, x) = ``shape`` with ``n_particles`` particles; returns the STAR path."""
    out = Path(out_dir)
    if (out / "tomogram.mrc").exists() and not overwrite:
        raise ConfigError(out, "a tomogram already exists here", "choose another folder or pass overwrite=True")
    classes = tuple(classes or SHREC_10)
    imaging = imaging if isinstance(imaging, ImagingParams) else ImagingParams(**(imaging or {}))
    rng = np.random.default_rng(seed)
    temps = load_templates(list(classes))
    stack = torch.stack([torch.from_numpy(temps[c]) for c in classes])
    radii = np.array([template_radius(temps[c]) for c in classes])
    centres, labels = place_particles(rng, tuple(shape), radii, n_particles)
    rots = random_rotations(rng, len(labels))
    density = torch.zeros(tuple(shape))
    for i in range(0, len(labels), 64):  # rotate in batches to bound memory
        place_templates(density, stack[labels[i : i + 64]], centres[i : i + 64], rots[i : i + 64])
    signal = imaged_signal(density, imaging)
    if not math.isinf(snr):
        h = box // 2
        var = np.mean([signal[tuple(slice(max(c - h, 0), c + h) for c in cz)].var().item() for cz in centres])
        gen = torch.Generator().manual_seed(int(rng.integers(2**63 - 1)))
        signal = signal + imaged_noise(tuple(shape), var / snr, imaging, gen)[0]
    out.mkdir(parents=True, exist_ok=True)
    voxel = imaging.pixel_size_nm * 10
    write_mrc(out / "tomogram.mrc", signal.float().numpy(), voxel_size=voxel)
    euler = euler_zyz(rots) if len(rots) else np.zeros((0, 3))
    df = pd.DataFrame(
        {
            "tomogram": "tomogram.mrc",  # relative to the table, as rlnImageName paths are
            "label": [classes[i] for i in labels],
            "x": centres[:, 2], "y": centres[:, 1], "z": centres[:, 0],
            "rlnAngleRot": euler[:, 0], "rlnAngleTilt": euler[:, 1], "rlnAnglePsi": euler[:, 2],
            "rlnPixelSize": voxel,
        }
    )
    write_particle_table(df, out / "particles.star", list(classes))
    write_particle_table(df, out / "particles.csv", list(classes))
    meta = dict(shape=list(shape), n_particles=int(len(labels)), snr=snr if math.isfinite(snr) else "inf",
                classes=list(classes), box=box, seed=seed, imaging=dataclasses.asdict(imaging), voxel_size_A=voxel)
    with atomic_write(out / "tomogram.json", "w") as fh:
        fh.write(json.dumps(meta, indent=2))
    return out / "particles.star"
