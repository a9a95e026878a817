"""One crowded, imaged subtomogram: target + packed neighbours → imaging model → crop.

In the spirit of AITom's "few-molecule" packing simulator behind the paper's data (Liu et al.
2020): the target template at a uniformly random rotation, shifted up to ``max_shift`` voxels from
the box centre, crowded by ``n_neighbours`` randomly rotated templates of any class packed around it
without overlap (bounding spheres) and each at least ``centre_margin`` voxels farther from the box
centre than the target (so the labelled target is always the particle nearest the centre), summed
into a map larger than the box, imaged with :func:`cryomonai.simulate.imaging.image_volume`
(band-pass, CTF, missing wedge, noise at the SNR measured inside the crop) and cropped to ``box³``
around the map centre.

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
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch

from cryomonai.errors import CryoDataError
from cryomonai.simulate.geometry import euler_zyz, pack_neighbours, random_rotations, rotate_shift
from cryomonai.simulate.imaging import ImagingParams, image_volume, imaged_signal, measured_snr

__all__ = ["Layout", "SubtomogramSimulator", "box_and_target_snr", "neighbour_range", "paste", "place_templates"]


class Layout(NamedTuple):
    """The geometry of one subtomogram, in voxels of the simulation map (see :class:`SubtomogramSimulator`).

    Attributes:
        classes: (k,) class of each particle; row 0 is the target, then the placed neighbours.
        centres_zyx: (k, 3) particle centres (z, y, x) in the map.
        rotations: (k, 3, 3) rotations acting on (x, y, z).
        shift_zyx: (3,) the target's shift from the box centre (z, y, x).
    """

    classes: np.ndarray
    centres_zyx: np.ndarray
    rotations: np.ndarray
    shift_zyx: np.ndarray


def box_and_target_snr(
    observed: torch.Tensor, signal: torch.Tensor, target_signal: torch.Tensor
) -> tuple[float, float]:
    """Measured SNRs ``(var(signal) / var(noise), var(target_signal) / var(noise))``, ``noise = observed − signal``.

    Args:
        observed: (box³) or (n, box³) noisy realisations of ``signal``.
        signal: (box³) noise-free imaged box (target + neighbours).
        target_signal: (box³) the target alone, imaged with the same filters (no noise).
    """
    noise = observed - signal
    return measured_snr(signal, noise), measured_snr(target_signal, noise)


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


def neighbour_range(n_neighbours: int | Sequence[int]) -> tuple[int, int]:
    """``(lo, hi)`` of a neighbour count: an integer ``n`` → ``(n, n)``; a pair ``[lo, hi]`` as given.

    Example:
        >>> neighbour_range(4), neighbour_range([0, 4])
        ((4, 4), (0, 4))
    """
    values = [n_neighbours] if np.ndim(n_neighbours) == 0 else list(n_neighbours)
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or any(int(v) != v or v < 0 for v in values) or values[0] > values[1]:
        raise CryoDataError("n_neighbours", f"{n_neighbours!r} is not a count >= 0 or a pair [lo, hi] with lo <= hi",
                            "give e.g. 4, or [0, 4] for 0 to 4 neighbours drawn per subtomogram")
    return int(values[0]), int(values[1])


class SubtomogramSimulator:
    """Simulates labelled subtomograms from a stack of density templates.

    Args:
        templates: (C, S, S, S) float templates (z, y, x), one per class, centred in a common box.
        radii: (C,) bounding-sphere radius of each template in voxels.
        box: output box size (e.g. 28, 32, 64).
        n_neighbours: number of neighbours packed around the target (fewer if they do not fit); a
            pair ``[lo, hi]`` draws it uniformly from ``lo..hi`` per subtomogram (varied crowding, so
            a classifier also sees isolated particles); an integer draws nothing.
        max_shift: the target's centre is shifted uniformly by up to ± this many voxels per axis.
        imaging: the imaging model.
        centre_margin: each neighbour's centre is at least this many voxels farther from the box
            centre than the target's (a neighbour that does not fit is left out).
    """

    def __init__(
        self,
        templates: torch.Tensor,
        radii: np.ndarray,
        box: int = 32,
        n_neighbours: int | Sequence[int] = 4,
        max_shift: float = 8.0,
        imaging: ImagingParams = ImagingParams(),
        centre_margin: float = 2.0,
    ) -> None:
        self.templates = torch.as_tensor(templates, dtype=torch.float32)
        self.radii = np.asarray(radii, dtype=float)
        self.neighbour_range = neighbour_range(n_neighbours)
        self.box, self.max_shift, self.imaging = box, max_shift, imaging
        self.centre_margin = float(centre_margin)
        s = self.templates.shape[-1]
        size = box + s
        self.size = size + (size - box) % 2  # map size L with (L - box) even, so the crop is centred
        c0 = (self.size - box) // 2
        self.crop = (slice(c0, c0 + box),) * 3
        self.centre = c0 + box // 2  # index of the map (and crop) centre: voxel box // 2 of the crop

    def layout(self, rng: np.random.Generator, target: int) -> Layout:
        """Draw the geometry of one subtomogram of class ``target`` (no imaging; consumes ``rng``)."""
        shift_zyx = rng.uniform(-self.max_shift, self.max_shift, size=3)
        target_c = self.centre + shift_zyx
        lo, hi = self.neighbour_range
        n_nb = lo if lo == hi else int(rng.integers(lo, hi + 1))  # a fixed count draws nothing (datasets unchanged)
        nb_cls = rng.integers(0, len(self.templates), size=n_nb)
        nb_c, placed = pack_neighbours(
            rng, target_c, self.radii[target], self.radii[nb_cls], box_centre=np.full(3, float(self.centre)),
            margin=self.centre_margin,
        )
        classes = np.concatenate([[target], nb_cls[placed]]).astype(int)
        centres = np.concatenate([target_c[None], nb_c[placed]])
        return Layout(classes, centres, random_rotations(rng, len(classes)), shift_zyx)

    def __call__(self, rng: np.random.Generator, target: int, snr: float, n_realisations: int = 1) -> dict:
        """Simulate one subtomogram of class ``target``.

        Returns a dict: ``observed`` (box³ float32 numpy; (n, box³) if ``n_realisations > 1``),
        ``clean`` (the target's density alone, rotated/shifted, no imaging, box³), ``signal`` (the
        noise-free imaged crop), ``target_signal`` (the target alone, imaged, noise-free), ``label``,
        ``euler`` (rot, tilt, psi in degrees, ZYZ), ``shift`` (x, y, z voxels from the box centre),
        ``snr`` (requested), ``snr_box`` and ``snr_target`` (measured: var(signal) and
        var(target_signal) over var(noise); ``inf`` without noise), ``n_neighbours`` (placed).
        """
        lay = self.layout(rng, target)
        clean = torch.zeros((self.size,) * 3)
        place_templates(clean, self.templates[lay.classes[:1]], lay.centres_zyx[:1], lay.rotations[:1])
        density = clean.clone()
        place_templates(density, self.templates[lay.classes[1:]], lay.centres_zyx[1:], lay.rotations[1:])
        gen = torch.Generator().manual_seed(int(rng.integers(2**63 - 1)))
        obs, signal = image_volume(density, snr, self.imaging, gen, self.crop, n_realisations)
        target_signal = imaged_signal(clean, self.imaging)[self.crop].float()
        snr_box, snr_target = box_and_target_snr(obs, signal, target_signal)
        return {
            "observed": (obs[0] if n_realisations == 1 else obs).numpy(),
            "clean": clean[self.crop].numpy(),
            "signal": signal.numpy(),
            "target_signal": target_signal.numpy(),
            "label": int(target),
            "euler": euler_zyz(lay.rotations[:1])[0],
            "shift": lay.shift_zyx[::-1].copy(),
            "snr": float(snr) if not math.isinf(snr) else math.inf,
            "snr_box": snr_box,
            "snr_target": snr_target,
            "n_neighbours": len(lay.classes) - 1,
        }
