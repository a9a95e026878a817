"""One crowded, imaged subtomogram: target + packed neighbours → imaging model → crop.

In the spirit of AITom's "few-molecule" packing simulator behind the paper's data (Liu et al.
2020): the target template at a uniformly random rotation, shifted up to ``max_shift`` voxels from
the box centre, crowded by ``n_neighbours`` randomly rotated templates of any class packed around it
without overlap (bounding spheres), summed into a map larger than the box, imaged with
:func:`cryomonai.simulate.imaging.image_volume` (band-pass, CTF, missing wedge, noise at the SNR
measured inside the crop) and cropped to ``box³`` around the map centre.

Example:
    >>> import numpy as np, torch
    >>> t = torch.zeros(2, 12, 12, 12); t[:, 4:8, 4:8, 4:8] = 1
    >>> sim = SubtomogramSimulator(t, radii=np.array([3.5, 3.5]), box=16, n_neighbours=2)
    >>> out = sim(np.random.default_rng(0), target=1, snr=0.1)
    >>> out["observed"].shape, out["clean"].shape, out["label"]
    ((16, 16, 16), (16, 16, 16), 1)
"""

from __future__ import annotations

import math

import numpy as np
import torch

from cryomonai.simulate.geometry import euler_zyz, pack_neighbours, random_rotations, rotate_shift
from cryomonai.simulate.imaging import ImagingParams, image_volume

__all__ = ["SubtomogramSimulator", "paste", "place_templates"]


def paste(canvas: torch.Tensor, vol: torch.Tensor, start: np.ndarray) -> None:
    """Add ``vol`` (S, S, S) into ``canvas`` (D, H, W) at integer ``start`` (z, y, x), clipping at the edges."""
    src, dst = [], []
    for n_c, n_v, s0 in zip(canvas.shape, vol.shape, start.astype(int)):
        a, b = max(s0, 0), min(s0 + n_v, n_c)
        if a >= b:
            return
        dst.append(slice(a, b))
        src.append(slice(a - s0, b - s0))
    canvas[tuple(dst)] += vol[tuple(src)]


def place_templates(
    canvas: torch.Tensor, templates: torch.Tensor, centres_zyx: np.ndarray, rotations: np.ndarray
) -> None:
    """Add templates (k, S, S, S), rotated by ``rotations`` (k, 3, 3) about their box centre, into
    ``canvas`` (D, H, W) with their centres at the (sub-voxel) positions ``centres_zyx`` (k, 3)."""
    if len(templates) == 0:
        return
    s = templates.shape[-1]
    start = np.asarray(centres_zyx, dtype=float) - s // 2
    i0 = np.floor(start)
    frac_xyz = np.ascontiguousarray((start - i0)[:, ::-1])  # sub-voxel part, applied by interpolation
    for v, st in zip(rotate_shift(templates, rotations, frac_xyz), i0):
        paste(canvas, v, st)


class SubtomogramSimulator:
    """Simulates labelled subtomograms from a stack of density templates.

    Args:
        templates: (C, S, S, S) float templates (z, y, x), one per class, centred in a common box.
        radii: (C,) bounding-sphere radius of each template in voxels.
        box: output box size (e.g. 28, 32, 64).
        n_neighbours: number of neighbours packed around the target (fewer if they do not fit).
        max_shift: the target's centre is shifted uniformly by up to ± this many voxels per axis.
        imaging: the imaging model.
    """

    def __init__(
        self,
        templates: torch.Tensor,
        radii: np.ndarray,
        box: int = 32,
        n_neighbours: int = 4,
        max_shift: float = 8.0,
        imaging: ImagingParams = ImagingParams(),
    ) -> None:
        self.templates = torch.as_tensor(templates, dtype=torch.float32)
        self.radii = np.asarray(radii, dtype=float)
        self.box, self.n_neighbours, self.max_shift, self.imaging = box, n_neighbours, max_shift, imaging
        s = self.templates.shape[-1]
        size = box + s
        self.size = size + (size - box) % 2  # map size L with (L - box) even, so the crop is centred
        c0 = (self.size - box) // 2
        self.crop = (slice(c0, c0 + box),) * 3
        self.centre = c0 + box // 2  # index of the map (and crop) centre: voxel box // 2 of the crop

    def __call__(self, rng: np.random.Generator, target: int, snr: float, n_realisations: int = 1) -> dict:
        """Simulate one subtomogram of class ``target``.

        Returns a dict: ``observed`` (box³ float32 numpy; (n, box³) if ``n_realisations > 1``),
        ``clean`` (the target's density alone, rotated/shifted, no imaging, box³), ``signal`` (the
        noise-free imaged crop), ``label``, ``euler`` (rot, tilt, psi in degrees, ZYZ),
        ``shift`` (x, y, z voxels from the box centre), ``snr``, ``n_neighbours`` (placed).
        """
        shift_zyx = rng.uniform(-self.max_shift, self.max_shift, size=3)
        target_c = self.centre + shift_zyx
        nb_cls = rng.integers(0, len(self.templates), size=self.n_neighbours)
        nb_c, placed = pack_neighbours(rng, target_c, self.radii[target], self.radii[nb_cls])
        classes = np.concatenate([[target], nb_cls[placed]]).astype(int)
        centres = np.concatenate([target_c[None], nb_c[placed]])
        rots = random_rotations(rng, len(classes))
        clean = torch.zeros((self.size,) * 3)
        place_templates(clean, self.templates[classes[:1]], centres[:1], rots[:1])
        density = clean.clone()
        place_templates(density, self.templates[classes[1:]], centres[1:], rots[1:])
        gen = torch.Generator().manual_seed(int(rng.integers(2**63 - 1)))
        obs, signal = image_volume(density, snr, self.imaging, gen, self.crop, n_realisations)
        return {
            "observed": (obs[0] if n_realisations == 1 else obs).numpy(),
            "clean": clean[self.crop].numpy(),
            "signal": signal.numpy(),
            "label": int(target),
            "euler": euler_zyz(rots[:1])[0],
            "shift": shift_zyx[::-1].copy(),
            "snr": float(snr) if not math.isinf(snr) else math.inf,
            "n_neighbours": int(placed.sum()),
        }
