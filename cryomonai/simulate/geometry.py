"""Rigid placement of templates: uniform random rotations, ZYZ Euler angles, batched rotate+shift,
and bounding-sphere packing of neighbours (AITom's "few-molecule" crowding, Liu et al. 2020).

Conventions: volumes are ``(z, y, x)``; rotation matrices act on column vectors ``(x, y, z)``
(right-handed, as ``scipy.spatial.transform.Rotation``). A particle with rotation ``R`` and shift
``t`` (voxels, xyz) is ``particle(p) = template(Rᵀ (p − c − t) + c)`` with ``c`` the box centre,
voxel index ``S // 2`` on each axis (the MRC/RELION convention the templates are centred on).
Euler angles are ``Rotation.as_euler("ZYZ", degrees=True)`` (intrinsic z-y'-z''), recorded as
RELION's ``rlnAngleRot``, ``rlnAngleTilt``, ``rlnAnglePsi``.

Example:
    >>> import numpy as np
    >>> R = random_rotations(np.random.default_rng(0), 2)
    >>> R.shape, bool(np.allclose(R[0] @ R[0].T, np.eye(3), atol=1e-6))
    ((2, 3, 3), True)
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.spatial.transform import Rotation

__all__ = ["random_rotations", "euler_zyz", "matrix_from_euler_zyz", "rotate_shift", "pack_neighbours"]


def random_rotations(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` rotation matrices (n, 3, 3) drawn uniformly from SO(3) (Haar measure)."""
    return Rotation.random(n, random_state=rng).as_matrix().reshape(n, 3, 3)


def euler_zyz(matrices: np.ndarray) -> np.ndarray:
    """ZYZ Euler angles in degrees, (n, 3) = (rot, tilt, psi), of rotation matrices (n, 3, 3)."""
    return Rotation.from_matrix(matrices).as_euler("ZYZ", degrees=True).reshape(-1, 3)


def matrix_from_euler_zyz(angles_deg: np.ndarray) -> np.ndarray:
    """Inverse of :func:`euler_zyz`: (n, 3) degrees → (n, 3, 3)."""
    return Rotation.from_euler("ZYZ", np.asarray(angles_deg).reshape(-1, 3), degrees=True).as_matrix()


def rotate_shift(volumes: torch.Tensor, matrices: np.ndarray, shifts_xyz: np.ndarray | None = None) -> torch.Tensor:
    """Rotate and shift a batch of cubic volumes about their centre voxel ``S // 2`` (trilinear, zero outside).

    Args:
        volumes: (B, S, S, S) (z, y, x), cubic.
        matrices: (B, 3, 3) rotations acting on (x, y, z).
        shifts_xyz: (B, 3) shifts in voxels, (x, y, z) order; default none.

    Returns:
        (B, S, S, S) float32: ``out(p) = vol(Rᵀ (p − c − t) + c)``.
    """
    b, s = volumes.shape[0], volumes.shape[-1]
    rt = torch.as_tensor(np.asarray(matrices), dtype=torch.float32).transpose(1, 2)  # Rᵀ
    t = torch.zeros(b, 3) if shifts_xyz is None else torch.as_tensor(np.asarray(shifts_xyz), dtype=torch.float32)
    # grid_sample's origin (align_corners=False) is index (S-1)/2; the rotation centre S//2 is δ from it
    delta = torch.full((b, 3, 1), 2.0 * (s // 2 - (s - 1) / 2) / s)
    t_norm = 2.0 * t[:, :, None] / s  # voxels → normalised grid units
    theta = torch.cat([rt, delta - rt @ (delta + t_norm)], dim=2).to(volumes.device)  # (B, 3, 4)
    grid = F.affine_grid(theta, (b, 1, s, s, s), align_corners=False)  # grid[..., :] = (x, y, z)
    out = F.grid_sample(volumes[:, None].float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out[:, 0]


def pack_neighbours(
    rng: np.random.Generator,
    centre: np.ndarray,
    radius: float,
    neighbour_radii: np.ndarray,
    gap: tuple[float, float] = (0.0, 2.0),
    max_tries: int = 50,
    box_centre: np.ndarray | None = None,
    margin: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Pack spheres around a target sphere without overlap (bounding-sphere packing).

    Each neighbour ``i`` is placed at distance ``radius + r_i + g_i`` from the target, ``g_i`` drawn
    uniformly from ``gap`` per neighbour (the extra distance beyond contact; the default ``(0, 2)``
    is the "touching shell"), in a uniformly random direction, rejecting positions that overlap an earlier neighbour and,
    with ``box_centre``, positions whose centre is not at least ``margin`` farther from
    ``box_centre`` than the target's centre (so the target stays the particle nearest to it).
    The result is a deterministic function of the generator's state.

    Args:
        rng: random generator.
        centre: (3,) target centre (any consistent axis order).
        radius: target bounding radius.
        neighbour_radii: (n,) radii of the candidate neighbours, in placement order.
        gap: ``(lo, hi)`` range of the extra distance beyond contact, drawn per neighbour.
        max_tries: directions tried per neighbour before it is left out.
        box_centre: (3,) the point the target must stay nearest to (same axis order); ``None``
            places neighbours anywhere around the target.
        margin: how much farther from ``box_centre`` than the target a neighbour's centre must be.

    Returns:
        ``(centres, placed)``: (n, 3) centres (NaN where not placed) and a (n,) bool mask.
    """
    n = len(neighbour_radii)
    centres = np.full((n, 3), np.nan)
    placed = np.zeros(n, dtype=bool)
    min_dist = None if box_centre is None else np.linalg.norm(centre - box_centre) + margin
    for i, r in enumerate(neighbour_radii):
        for _ in range(max_tries):
            u = rng.normal(size=3)
            u /= np.linalg.norm(u)
            c = centre + u * (radius + r + rng.uniform(*gap))
            if min_dist is not None and np.linalg.norm(c - box_centre) < min_dist:
                continue
            others = centres[placed]
            if len(others) == 0 or np.all(np.linalg.norm(others - c, axis=1) >= neighbour_radii[placed] + r):
                centres[i], placed[i] = c, True
                break
    return centres, placed
