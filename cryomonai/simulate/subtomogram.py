"""One crowded, imaged subtomogram: target + packed neighbours → imaging model → crop.

In the spirit of AITom's "few-molecule" packing simulator behind the paper's data (Liu et al.
2020): the target template at a uniformly random rotation, shifted up to ``max_shift`` voxels from
the box centre, crowded by ``n_neighbours`` randomly rotated templates of any class packed around it
without overlap (bounding spheres) and each at least ``centre_margin`` voxels farther from the box
centre than the target (so the labelled target is always the particle nearest the centre), summed
into a map larger than the box, imaged with :func:`cryomonai.simulate.imaging.image_volume`
(band-pass, CTF, missing wedge, noise at the SNR measured inside the crop) and cropped to ``box³``
around the map centre.

**Crowding without a shortcut.** Each neighbour sits ``r_contact + r_neighbour + g`` voxels from the
target's centre, the gap ``g`` drawn uniformly from ``neighbour_gap`` per neighbour, and the number
of neighbours is drawn per box from ``n_neighbours``. ``r_contact`` is set by ``neighbour_contact``:
``"largest"`` (default) the largest template's radius, so where the neighbours sit does not depend
on the target's class (a small target's nearest neighbour is farther from its surface);
``"target"`` the target's own radius (``g`` is then the distance beyond contact with the target).
The defaults, :data:`NEIGHBOUR_GAP` = (0, 8) voxels, :data:`N_NEIGHBOURS` = (0, 4) and
``"largest"``, give near and far neighbours and isolated boxes alike. With ``"target"`` the shell of
neighbours still tells a classifier the target's size, even with a (0, 8) gap (a context-only
classifier scored 36–45 % for 4 classes of different sizes, chance 25 %; 26–30 % with
``"largest"``, 78–81 % with the touching shell: ``tests/test_context_control.py``). The old
setting, :data:`TOUCHING_SHELL` (4 neighbours, gap 0–2 voxels beyond contact with the target),
draws exactly as before when given explicitly.

**The context control.** ``sim(rng, target, snr, context=True)`` also returns ``context``: the same
box without the target — same neighbours and poses, same filters, and the *same noise*
(realisation and level: the noise is set by the real box's signal and drawn once, then added to
both). The imaging model is linear, so the context's signal is the box's signal minus the imaged
target (``observed − context = target_signal`` up to rounding). A classifier that scores above
chance on context boxes has learnt something other than the target
(:func:`cryomonai.evaluation.context.context_valid`).

Example:
    >>> import numpy as np, torch
    >>> t = torch.zeros(2, 12, 12, 12); t[:, 4:8, 4:8, 4:8] = 1
    >>> sim = SubtomogramSimulator(t, radii=np.array([3.5, 3.5]), box=16, n_neighbours=2)
    >>> out = sim(np.random.default_rng(0), target=1, snr=0.1, context=True)
    >>> out["observed"].shape, out["clean"].shape, out["context"].shape, out["label"]
    ((16, 16, 16), (16, 16, 16), (16, 16, 16), 1)
    >>> bool(np.allclose(out["observed"] - out["context"], out["target_signal"], atol=1e-5))
    True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch

from cryomonai.errors import ConfigError
from cryomonai.simulate.geometry import euler_zyz, pack_neighbours, random_rotations, rotate_shift
from cryomonai.simulate.imaging import ImagingParams, imaged_signal, measured_snr, signal_and_noise

__all__ = [
    "N_NEIGHBOURS", "NEIGHBOUR_CONTACTS", "NEIGHBOUR_GAP", "TOUCHING_SHELL", "Layout", "SubtomogramSimulator",
    "box_and_target_snr", "gap_range", "neighbour_range", "paste", "place_templates",
]

#: default neighbour count, drawn per box from ``lo..hi`` (isolated to crowded)
N_NEIGHBOURS: tuple[int, int] = (0, 4)
#: default range of a neighbour's extra distance beyond contact (voxels), drawn per neighbour
NEIGHBOUR_GAP: tuple[float, float] = (0.0, 8.0)
#: what the neighbour gap is measured from: the largest template's radius or the target's own
NEIGHBOUR_CONTACTS: tuple[str, ...] = ("largest", "target")
#: the "touching shell" (the simulator before issue 26): 4 neighbours, each within 2 voxels of contact
TOUCHING_SHELL: dict = {"n_neighbours": 4, "neighbour_gap": (0.0, 2.0), "neighbour_contact": "target"}


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
        raise ConfigError("n_neighbours", f"{n_neighbours!r} is not a count >= 0 or a pair [lo, hi] with lo <= hi",
                          "give e.g. 4, or [0, 4] for 0 to 4 neighbours drawn per subtomogram")
    return int(values[0]), int(values[1])


def gap_range(neighbour_gap: float | Sequence[float]) -> tuple[float, float]:
    """``(lo, hi)`` voxels of the extra distance beyond contact: a number ``g`` → ``(g, g)``.

    Example:
        >>> gap_range([0, 8]), gap_range(1)
        ((0.0, 8.0), (1.0, 1.0))
    """
    values = [neighbour_gap] if np.ndim(neighbour_gap) == 0 else list(neighbour_gap)
    values = values * 2 if len(values) == 1 else values
    ok = len(values) == 2 and all(isinstance(v, (int, float, np.number)) and math.isfinite(v) for v in values)
    if not ok or values[0] < 0 or values[0] > values[1]:
        raise ConfigError("neighbour_gap", f"{neighbour_gap!r} is not a distance >= 0 or a pair [lo, hi] with lo <= hi",
                          "give e.g. [0, 8] (voxels beyond contact, drawn per neighbour), or [0, 2] for the "
                          "touching shell")
    return float(values[0]), float(values[1])


class SubtomogramSimulator:
    """Simulates labelled subtomograms from a stack of density templates.

    Args:
        templates: (C, S, S, S) float templates (z, y, x), one per class, centred in a common box.
        radii: (C,) bounding-sphere radius of each template in voxels.
        box: output box size (e.g. 28, 32, 64).
        n_neighbours: number of neighbours packed around the target (fewer if they do not fit); a
            pair ``[lo, hi]`` draws it uniformly from ``lo..hi`` per subtomogram (varied crowding, so
            a classifier also sees isolated particles; default :data:`N_NEIGHBOURS`); an integer
            draws nothing.
        neighbour_gap: ``(lo, hi)`` voxels: each neighbour's extra distance beyond contact, drawn
            uniformly per neighbour (default :data:`NEIGHBOUR_GAP`; ``(0, 2)`` with 4 neighbours and
            ``neighbour_contact="target"`` is the touching shell, :data:`TOUCHING_SHELL`).
        neighbour_contact: contact with a sphere of the ``"largest"`` template's radius (default:
            the neighbours' places do not depend on the target's class) or of the ``"target"``'s.
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
        n_neighbours: int | Sequence[int] = N_NEIGHBOURS,
        max_shift: float = 8.0,
        imaging: ImagingParams = ImagingParams(),
        centre_margin: float = 2.0,
        neighbour_gap: float | Sequence[float] = NEIGHBOUR_GAP,
        neighbour_contact: str = "largest",
    ) -> None:
        if neighbour_contact not in NEIGHBOUR_CONTACTS:
            raise ConfigError("neighbour_contact", f"unknown value {neighbour_contact!r}",
                              f"use one of {list(NEIGHBOUR_CONTACTS)}")
        self.templates = torch.as_tensor(templates, dtype=torch.float32)
        self.radii = np.asarray(radii, dtype=float)
        self.neighbour_range = neighbour_range(n_neighbours)
        self.neighbour_gap, self.neighbour_contact = gap_range(neighbour_gap), neighbour_contact
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
            rng, target_c, self._contact_radius(target), self.radii[nb_cls], self.neighbour_gap,
            box_centre=np.full(3, float(self.centre)), margin=self.centre_margin,
        )
        classes = np.concatenate([[target], nb_cls[placed]]).astype(int)
        centres = np.concatenate([target_c[None], nb_c[placed]])
        return Layout(classes, centres, random_rotations(rng, len(classes)), shift_zyx)

    def _contact_radius(self, target: int) -> float:
        """The radius the neighbours' gaps are measured from (see ``neighbour_contact``)."""
        return float(self.radii.max() if self.neighbour_contact == "largest" else self.radii[target])

    def __call__(
        self, rng: np.random.Generator, target: int, snr: float, n_realisations: int = 1, context: bool = False
    ) -> dict:
        """Simulate one subtomogram of class ``target``.

        Returns a dict: ``observed`` (box³ float32 numpy; (n, box³) if ``n_realisations > 1``),
        ``clean`` (the target's density alone, rotated/shifted, no imaging, box³), ``signal`` (the
        noise-free imaged crop), ``target_signal`` (the target alone, imaged, noise-free), ``label``,
        ``euler`` (rot, tilt, psi in degrees, ZYZ), ``shift`` (x, y, z voxels from the box centre),
        ``snr`` (requested), ``snr_box`` and ``snr_target`` (measured: var(signal) and
        var(target_signal) over var(noise); ``inf`` without noise), ``n_neighbours`` (placed); with
        ``context``, also ``context``: ``observed`` without the target (same neighbours, filters and
        noise; shaped like ``observed``). ``context`` draws nothing from ``rng``.
        """
        lay = self.layout(rng, target)
        clean = torch.zeros((self.size,) * 3)
        place_templates(clean, self.templates[lay.classes[:1]], lay.centres_zyx[:1], lay.rotations[:1])
        density = clean.clone()
        place_templates(density, self.templates[lay.classes[1:]], lay.centres_zyx[1:], lay.rotations[1:])
        gen = torch.Generator().manual_seed(int(rng.integers(2**63 - 1)))
        signal64, noise = signal_and_noise(density, snr, self.imaging, gen, self.crop, n_realisations)
        obs, signal = (signal64 + noise).float(), signal64.float()
        target64 = imaged_signal(clean, self.imaging)[self.crop]
        target_signal = target64.float()
        snr_box, snr_target = box_and_target_snr(obs, signal, target_signal)
        out = {
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
        if context:  # linear imaging: the neighbours' signal is the box's minus the target's; same noise
            ctx = ((signal64 - target64) + noise).float()
            out["context"] = (ctx[0] if n_realisations == 1 else ctx).numpy()
        return out
