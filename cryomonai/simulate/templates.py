"""Density templates of macromolecular complexes for the subtomogram simulator.

An atomic model is turned into a density map by **mass-weighted Gaussian atom splatting**
(as in Chimera's ``molmap`` and the SHREC/PolNet simulators): every atom contributes a 3D
Gaussian carrying its mass. The templates are the classes of the simulated, paper-style dataset
(Gupta et al. 2022, "Self-supervised learning for macromolecular structure classification based
on cryo-electron tomograms", Front. Physiol.).

Conventions:
    * Arrays are ``(z, y, x)`` (MRC order); coordinates are in Å in ``(z, y, x)`` order too.
    * The molecule's centre of mass sits at voxel index ``N // 2`` along each axis of the cubic
      ``N``-voxel box (the RELION/MRC convention; the reference maps' header says
      ``nxstart = -N/2``). Rotating about that voxel keeps the molecule centred.
    * Width: ``sigma = 0.225 * resolution`` Å (Chimera ``molmap``'s ``sigmaFactor = 1/(pi*sqrt(2))``).
    * Anti-aliasing: at 10 Å/voxel that sigma (2.25 Å) is a fraction of a voxel, so point-sampling
      the Gaussians would alias badly. Instead each voxel receives the **exact integral** of every
      Gaussian over the voxel's cube (a product of three differences of normal CDFs), i.e. the
      limit of splatting on an infinitely fine grid and averaging down. Mass is conserved exactly.
    * Units: ``atoms_to_density`` returns Da/Å³ (voxel mass / voxel volume), so
      ``vol.sum() * voxel_size**3`` is the molecular mass in Da. The shipped templates are divided
      by the mean protein density 0.81 Da/Å³ (1.35 g/cm³, Fischer et al. 2004, Protein Sci 13:2825),
      i.e. they are a *protein volume fraction*: 1 means a voxel full of protein. Their maxima are
      0.88–1.10 (RNA is denser than protein), and ``vol.sum() * 0.81 * voxel_size**3`` is the mass in
      Da, so relative masses are kept: the 729 kDa 30S subunit has 26x the total density of the
      28 kDa 3qm1 — the size contrast between classes that the simulator relies on.

Atom selection (``read_atoms``): first model only; hydrogens and waters are skipped (crystal
structures rarely have hydrogens, so omitting them treats all complexes alike; hydrogens are ~7 %
of protein mass); alternative conformations keep the first conformer; ligands and ions are kept.

The 13 complexes (``TEMPLATE_IDS``) are the SHREC'20/'21 protein set plus three more; the
shipped file ``data/templates_10A.npz`` is built by ``tools/build_templates.py``.
"""

from __future__ import annotations

import os
from importlib import resources

import gemmi
import numpy as np
from scipy.special import ndtr

from cryomonai.errors import ConfigError, CryoDataError

__all__ = [
    "TEMPLATE_IDS",
    "SHREC_10",
    "TEMPLATE_INFO",
    "PROTEIN_DENSITY",
    "TEMPLATES_FILE",
    "read_atoms",
    "atoms_to_density",
    "default_box",
    "load_templates",
    "template_radius",
    "centre_of_mass",
]

#: The 13 complexes, in a fixed order (SHREC'20/'21's ten first, then three larger ones).
TEMPLATE_IDS: tuple[str, ...] = (
    "1bxn", "1qvr", "1s3x", "1u6g", "2cg9", "3cf3", "3d2f", "3gl1", "3h84", "3qm1",
    "3j9i", "4v4r_30S", "5gjv",
)  # fmt: skip

#: The ten SHREC protein classes: the default 10 classes of the paper-style dataset.
SHREC_10: tuple[str, ...] = TEMPLATE_IDS[:10]

#: One-line description and PDB DOI of each complex (used by the README and docs).
TEMPLATE_INFO: dict[str, str] = {
    "1bxn": "RuBisCO (Cupriavidus necator, formerly Alcaligenes eutrophus), doi:10.2210/pdb1BXN/pdb",
    "1qvr": "ClpB chaperone (Thermus thermophilus), doi:10.2210/pdb1QVR/pdb",
    "1s3x": "Hsp70 ATPase domain (human), doi:10.2210/pdb1S3X/pdb",
    "1u6g": "CAND1-Cul1-Roc1 ubiquitin ligase complex (human), doi:10.2210/pdb1U6G/pdb",
    "2cg9": "Hsp90-Sba1 closed chaperone complex (yeast), doi:10.2210/pdb2CG9/pdb",
    "3cf3": "p97/VCP AAA ATPase with ADP (mouse), doi:10.2210/pdb3CF3/pdb",
    "3d2f": "Sse1p (yeast) - Hsp70 (human) complex, doi:10.2210/pdb3D2F/pdb",
    "3gl1": "Ssb1 ATPase domain, Hsp70 family (yeast), doi:10.2210/pdb3GL1/pdb",
    "3h84": "Get3 ATPase (yeast), doi:10.2210/pdb3H84/pdb",
    "3qm1": "Cinnamoyl esterase Lj0536 S106A (L. johnsonii), doi:10.2210/pdb3QM1/pdb",
    "3j9i": "20S proteasome (Thermoplasma acidophilum), doi:10.2210/pdb3J9I/pdb",
    "4v4r_30S": "30S ribosomal subunit of the T. thermophilus 70S ribosome, doi:10.2210/pdb4V4R/pdb",
    "5gjv": "Cav1.1 voltage-gated calcium channel complex (rabbit), doi:10.2210/pdb5GJV/pdb",
}

#: Mean protein density in Da/Å³ (1.35 g/cm³); the shipped templates are in these units.
PROTEIN_DENSITY: float = 0.81

#: Name of the shipped template file inside ``cryomonai/simulate/data``.
TEMPLATES_FILE = "templates_10A.npz"

SIGMA_FACTOR = 0.225  # sigma = SIGMA_FACTOR * resolution (Chimera molmap: 1 / (pi * sqrt(2)))
_TRUNCATE = 4.0  # Gaussians are cut at 4 sigma (beyond the voxel they fall in)
_CHUNK = 8192  # atoms per vectorised block (bounds memory at ~ _CHUNK * window**3 floats)


def read_atoms(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read atom coordinates and masses from a PDB/mmCIF file with gemmi.

    Uses the first model only; skips hydrogens (and deuterium) and waters; keeps the first of
    alternative conformations; keeps ligands and ions.

    Args:
        path: a ``.pdb``/``.cif`` (optionally gzipped) atomic model.

    Returns:
        ``(coords, masses)``: ``coords`` float64 ``(n, 3)`` in Å in **(z, y, x)** order, and
        ``masses`` float64 ``(n,)`` in Da (standard atomic weights).

    Raises:
        CryoDataError: the file is missing, cannot be parsed, or holds no atoms.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CryoDataError(path, "atomic model file not found", "check the path (a .pdb or .cif file)")
    try:
        st = gemmi.read_structure(path)
    except (RuntimeError, ValueError) as err:
        raise CryoDataError(path, f"cannot parse atomic model ({err})", "give a valid PDB or mmCIF file") from err
    if len(st) == 0:
        raise CryoDataError(path, "no model in the file", "give a PDB/mmCIF file with ATOM records")
    st.remove_alternative_conformations()
    st.remove_hydrogens()
    st.remove_waters()
    xyz, mass = [], []
    for chain in st[0]:
        for res in chain:
            for atom in res:
                p = atom.pos
                xyz.append((p.z, p.y, p.x))
                mass.append(atom.element.weight)
    if not xyz:
        raise CryoDataError(path, "no (non-hydrogen, non-water) atoms in the first model", "give a file with atoms")
    return np.asarray(xyz, dtype=np.float64), np.asarray(mass, dtype=np.float64)


def centre_of_mass(coords: np.ndarray, masses: np.ndarray) -> np.ndarray:
    """Mass-weighted mean of ``coords`` ``(n, 3)``: a ``(3,)`` array in the same axis order."""
    return np.average(coords, axis=0, weights=masses)


def default_box(coords_zyx: np.ndarray, masses: np.ndarray, voxel_size: float = 10.0, resolution: float = 10.0) -> int:
    """Smallest even cubic box (voxels) holding the molecule under *any* rotation.

    The molecule's largest distance from its centre of mass plus a margin of the Gaussian's
    support (4 sigma) and one voxel must fit on both sides of the centre voxel ``N // 2``.
    """
    r = np.sqrt(((coords_zyx - centre_of_mass(coords_zyx, masses)) ** 2).sum(1)).max()
    half = int(np.ceil((r + _TRUNCATE * SIGMA_FACTOR * resolution) / voxel_size)) + 1
    return 2 * half


def _check_atoms(coords, masses, voxel_size: float, resolution: float) -> tuple[np.ndarray, np.ndarray]:
    """Validate ``(n, 3)`` coordinates and ``(n,)`` masses; returns them as float64 arrays."""
    coords, masses = np.asarray(coords, dtype=np.float64), np.asarray(masses, dtype=np.float64)
    if coords.ndim != 2 or coords.shape[1] != 3 or masses.shape != (coords.shape[0],) or len(masses) == 0:
        raise ValueError(f"atoms_to_density: coords {coords.shape} and masses {masses.shape} do not match "
                         "(pass coords (n, 3) and masses (n,) with n > 0)")
    if not (np.isfinite(coords).all() and np.isfinite(masses).all()) or masses.sum() <= 0:
        raise CryoDataError("atoms_to_density", "non-finite coordinates/masses or zero total mass", "check the model")
    if voxel_size <= 0 or resolution < 0:
        raise ConfigError(
            "atoms_to_density", f"voxel_size={voxel_size}, resolution={resolution}", "use voxel_size > 0, res >= 0"
        )
    return coords, masses


def _axis_weights(pos: np.ndarray, s: float, half: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-atom voxel indices ``(n, w)`` and exact 1D integrals of N(pos, s²) over each voxel."""
    base = np.rint(pos).astype(np.int64)
    idx = base[:, None] + np.arange(-half, half + 1)[None, :]  # (n, w)
    if s > 0:
        w = ndtr((idx + 0.5 - pos[:, None]) / s) - ndtr((idx - 0.5 - pos[:, None]) / s)
    else:  # a point mass falls entirely in its voxel
        w = (idx == base[:, None]).astype(np.float64)
    return idx, w


def atoms_to_density(
    coords_zyx: np.ndarray,
    masses: np.ndarray,
    voxel_size: float = 10.0,
    resolution: float = 10.0,
    box: int | None = None,
    centre_zyx: np.ndarray | None = None,
) -> np.ndarray:
    """Mass-weighted Gaussian splatting of atoms onto a cubic grid, centred on the centre of mass.

    Each atom is a 3D Gaussian of ``sigma = 0.225 * resolution`` Å (Chimera ``molmap``) carrying
    its mass; each voxel gets the exact integral of the Gaussians over its cube (no aliasing, mass
    conserved). Density that falls outside ``box`` is dropped (a crop).

    Args:
        coords_zyx: ``(n, 3)`` atom coordinates in Å, (z, y, x) order.
        masses: ``(n,)`` atomic masses in Da.
        voxel_size: Å per voxel.
        resolution: resolution in Å; 0 puts each atom's whole mass in its voxel.
        box: cubic box edge in voxels; default :func:`default_box` (smallest even, any rotation fits).
        centre_zyx: the point (Å, z y x) put at voxel ``box // 2``; default the centre of mass.

    Returns:
        float32 ``(box, box, box)`` density in Da/Å³, (z, y, x); the centre (of mass) is at voxel
        ``box // 2``, and ``out.sum() * voxel_size**3 == masses.sum()`` when nothing is cropped.

    Example:
        >>> vol = atoms_to_density(np.zeros((1, 3)), np.array([1000.0]), box=8)
        >>> vol.shape, [int(i) for i in np.unravel_index(np.argmax(vol), vol.shape)]
        ((8, 8, 8), [4, 4, 4])
        >>> round(float(vol.sum()) * 10.0**3, 3)  # Da/Å³ x voxel volume = mass in Da
        1000.0
    """
    coords, masses = _check_atoms(coords_zyx, masses, voxel_size, resolution)
    n = default_box(coords, masses, voxel_size, resolution) if box is None else int(box)
    if n < 1:
        raise ConfigError("atoms_to_density", f"box={box}", "use a positive box size")
    s = SIGMA_FACTOR * resolution / voxel_size  # sigma in voxels
    half = int(np.ceil(_TRUNCATE * s + 0.5))
    centre = centre_of_mass(coords, masses) if centre_zyx is None else np.asarray(centre_zyx, float)
    pos = (coords - centre) / voxel_size + n // 2  # (n_atoms, 3) voxel units
    flat = np.zeros(n**3, dtype=np.float64)
    for start in range(0, len(pos), _CHUNK):
        p, m = pos[start : start + _CHUNK], masses[start : start + _CHUNK]
        (iz, wz), (iy, wy), (ix, wx) = (_axis_weights(p[:, a], s, half) for a in range(3))
        wz, wy, wx = (np.where((i >= 0) & (i < n), w, 0.0) for i, w in ((iz, wz), (iy, wy), (ix, wx)))
        iz, iy, ix = (np.clip(i, 0, n - 1) for i in (iz, iy, ix))
        w = m[:, None, None, None] * wz[:, :, None, None] * wy[:, None, :, None] * wx[:, None, None, :]
        idx = (iz[:, :, None, None] * n + iy[:, None, :, None]) * n + ix[:, None, None, :]
        flat += np.bincount(idx.ravel(), weights=w.ravel(), minlength=n**3)
    return (flat / voxel_size**3).reshape(n, n, n).astype(np.float32)


def template_radius(vol: np.ndarray, frac: float = 0.98) -> float:
    """Radius (voxels) of the sphere about the box centre ``N // 2`` holding ``frac`` of the density.

    The simulator's packing treats each complex as a sphere of this radius.

    Args:
        vol: ``(z, y, x)`` cubic, non-negative density centred at voxel ``N // 2``.
        frac: fraction of the total (positive) density the sphere must hold, in (0, 1].

    Returns:
        The radius in voxels (a voxel at distance d counts as inside when d <= radius).
    """
    vol = np.asarray(vol, dtype=np.float64)
    if vol.ndim != 3 or not 0 < frac <= 1:
        raise ValueError(f"template_radius: volume of shape {vol.shape}, frac={frac} (use 3D and 0 < frac <= 1)")
    grids = np.meshgrid(*(np.arange(k) - k // 2 for k in vol.shape), indexing="ij")
    dist = np.sqrt(sum(g.astype(np.float64) ** 2 for g in grids)).ravel()
    w = np.clip(vol, 0, None).ravel()
    if w.sum() <= 0:
        raise CryoDataError("template_radius", "volume has no positive density", "pass a density template")
    order = np.argsort(dist, kind="stable")
    cum = np.cumsum(w[order]) / w.sum()
    return float(dist[order][min(np.searchsorted(cum, frac - 1e-12), len(cum) - 1)])


def load_templates(names: list[str] | tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
    """Load the shipped 10 Å/voxel templates (float16 on disk, common centred cubic box).

    Args:
        names: ids to load (see ``TEMPLATE_IDS``); ``None`` loads all 13 in ``TEMPLATE_IDS`` order.

    Returns:
        ``{id: float32 (N, N, N) (z, y, x)}`` in protein-volume-fraction units (Da/Å³ / 0.81).

    Raises:
        ConfigError: an unknown id.
        CryoDataError: the shipped file is missing.
    """
    res = resources.files("cryomonai.simulate").joinpath("data", TEMPLATES_FILE)
    if not res.is_file():
        raise CryoDataError(str(res), "template file missing", "run `python tools/build_templates.py` (repo root)")
    with res.open("rb") as fh, np.load(fh) as npz:
        stored = [k for k in npz.files if not k.startswith("_")]  # "_meta": provenance JSON
        available = [k for k in TEMPLATE_IDS if k in stored] + sorted(set(stored) - set(TEMPLATE_IDS))
        wanted = available if names is None else list(names)
        unknown = [k for k in wanted if k not in available]
        if unknown:
            raise ConfigError("load_templates", f"unknown template id(s) {unknown}", f"use some of {available}")
        return {k: npz[k].astype(np.float32) for k in wanted}
