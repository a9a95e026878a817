"""Tests of cryomonai.simulate.templates: atom splatting, PDB reading, the shipped templates and
their agreement with the PolNet reference maps (when ``shared/structures`` is available)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from cryomonai.errors import ConfigError, CryoDataError
from cryomonai.simulate.templates import (
    SHREC_10,
    TEMPLATE_IDS,
    TEMPLATE_INFO,
    atoms_to_density,
    default_box,
    load_templates,
    read_atoms,
    template_radius,
)

HERE = Path(__file__).resolve()


def _structures() -> Path | None:
    for cand in (HERE.parents[2] / "shared" / "structures", HERE.parents[1] / "shared" / "structures"):
        if (cand / "maps_10A").is_dir():
            return cand
    return None


TINY_PDB = """\
ATOM      1  N   GLY A   1      11.000  12.000  13.000  1.00  0.00           N
ATOM      2  CA  GLY A   1      12.000  12.000  13.000  1.00  0.00           C
ATOM      3  H   GLY A   1      11.500  12.500  13.000  1.00  0.00           H
ATOM      4  C   GLY A   1      13.000  12.000  14.000  1.00  0.00           C
HETATM    5  O   HOH A 101      20.000  20.000  20.000  1.00  0.00           O
HETATM    6 ZN    ZN A 102       1.000   2.000   3.000  1.00  0.00          ZN
END
"""


def test_single_atom_centred_and_symmetric():
    vol = atoms_to_density(np.array([[5.0, -3.0, 7.0]]), np.array([12.0]), voxel_size=10.0, resolution=10.0, box=9)
    assert vol.dtype == np.float32 and vol.shape == (9, 9, 9)
    assert np.unravel_index(np.argmax(vol), vol.shape) == (4, 4, 4)
    np.testing.assert_allclose(vol, vol[::-1], rtol=1e-5, atol=1e-12)  # symmetric about voxel 4
    np.testing.assert_allclose(vol, vol.transpose(2, 0, 1), rtol=1e-5, atol=1e-12)
    assert vol[4, 4, 3] > 0  # the Gaussian spills into neighbours (sigma 2.25 Å, exact integration)
    np.testing.assert_allclose(vol.sum() * 1000.0, 12.0, rtol=1e-5)  # Da/Å³ * Å³ = Da


def test_even_box_centre_is_n_over_2():
    vol = atoms_to_density(np.zeros((1, 3)), np.ones(1), box=8)
    assert np.unravel_index(np.argmax(vol), vol.shape) == (4, 4, 4)
    np.testing.assert_allclose(vol[4, 4, 3], vol[4, 4, 5], rtol=1e-5)


def test_total_density_proportional_to_mass():
    rng = np.random.default_rng(0)
    coords = rng.normal(scale=15.0, size=(50, 3))
    vol = atoms_to_density(coords, np.full(50, 2.0), box=16)
    vol3 = atoms_to_density(coords, np.full(50, 6.0), box=16)
    np.testing.assert_allclose(vol3, 3 * vol, rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(vol.sum() * 1000.0, 100.0, rtol=1e-5)


def test_heavier_atom_gets_more_density():
    coords = np.array([[0.0, 0.0, -30.0], [0.0, 0.0, 30.0]])
    vol = atoms_to_density(coords, np.array([1.0, 2.0]), box=16)
    # centre of mass at x = +10 Å: the light atom lands on x voxel 4, the heavy one on voxel 10
    light, heavy = vol[..., :7].sum(), vol[..., 7:].sum()
    np.testing.assert_allclose(heavy / light, 2.0, rtol=1e-4)
    assert vol[8, 8, 10] > vol[8, 8, 4] > 0
    assert np.unravel_index(np.argmax(vol), vol.shape) == (8, 8, 10)


def test_default_box_holds_molecule_any_rotation():
    coords = np.array([[0.0, 0.0, -75.0], [0.0, 0.0, 75.0]])
    n = default_box(coords, np.ones(2))
    assert n % 2 == 0 and n // 2 >= 8.5  # 75 Å = 7.5 voxels + margin on each side of N//2
    vol = atoms_to_density(coords, np.ones(2))
    assert vol.shape == (n, n, n)
    np.testing.assert_allclose(vol.sum() * 1000.0, 2.0, rtol=1e-5)  # nothing cropped


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="match"):
        atoms_to_density(np.zeros((3, 2)), np.ones(3))
    with pytest.raises(CryoDataError, match="non-finite"):
        atoms_to_density(np.full((1, 3), np.nan), np.ones(1))


def test_read_atoms_tiny_pdb(tmp_path):
    path = tmp_path / "tiny.pdb"
    path.write_text(TINY_PDB)
    coords, masses = read_atoms(path)
    assert coords.shape == (4, 3) and masses.shape == (4,)  # H and the water are skipped
    np.testing.assert_allclose(coords[0], [13.0, 12.0, 11.0])  # (z, y, x)
    np.testing.assert_allclose(coords[-1], [3.0, 2.0, 1.0])
    np.testing.assert_allclose(masses, [14.007, 12.011, 12.011, 65.38], atol=0.01)


def test_read_atoms_errors(tmp_path):
    with pytest.raises(CryoDataError, match="not found"):
        read_atoms(tmp_path / "missing.pdb")
    empty = tmp_path / "empty.pdb"
    empty.write_text("HETATM    1  O   HOH A   1       0.000   0.000   0.000  1.00  0.00           O\nEND\n")
    with pytest.raises(CryoDataError):
        read_atoms(empty)


def test_ids_and_info():
    assert len(TEMPLATE_IDS) == 13 == len(set(TEMPLATE_IDS))
    assert SHREC_10 == ("1bxn", "1qvr", "1s3x", "1u6g", "2cg9", "3cf3", "3d2f", "3gl1", "3h84", "3qm1")
    assert set(TEMPLATE_INFO) == set(TEMPLATE_IDS)
    assert all(f"pdb{k[:4].upper()}/pdb" in v for k, v in TEMPLATE_INFO.items())


def test_shipped_templates():
    temps = load_templates()
    assert list(temps) == list(TEMPLATE_IDS)
    n = temps["1bxn"].shape[0]
    for name, vol in temps.items():
        assert vol.dtype == np.float32 and vol.shape == (n, n, n), name
        assert np.isfinite(vol).all() and vol.min() >= 0 and 0.5 < vol.max() < 1.5, name
        com = np.array(ndimage.center_of_mass(vol))
        assert np.abs(com - n // 2).max() < 1.0, (name, com)
        assert template_radius(vol) < n // 2 - 1, name  # fits the box under any rotation
    total = {k: v.sum() for k, v in temps.items()}
    assert total["4v4r_30S"] > total["3j9i"] > total["1bxn"] > total["3qm1"]
    assert total["4v4r_30S"] > 10 * total["3qm1"]


def test_load_subset_and_unknown():
    sub = load_templates(["3qm1", "1bxn"])
    assert list(sub) == ["3qm1", "1bxn"]
    with pytest.raises(ConfigError, match="1bxn"):  # the message lists the available ids
        load_templates(["nope"])


def test_template_radius():
    vol = np.zeros((11, 11, 11))
    vol[5, 5, 5] = 1.0
    assert template_radius(vol) == 0.0
    vol[5, 5, 8] = 1.0
    assert template_radius(vol, frac=0.98) == 3.0
    assert template_radius(vol, frac=0.5) == 0.0


def test_shipped_templates_match_reference_maps():
    root = _structures()
    if root is None:
        pytest.skip("shared/structures/maps_10A not found beside or inside the repository")
    mrcfile = pytest.importorskip("mrcfile")
    spec = importlib.util.spec_from_file_location("build_templates", HERE.parents[1] / "tools" / "build_templates.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    for name, vol in load_templates().items():
        ref = mrcfile.read(root / "maps_10A" / f"{name}.mrc")
        r = tool.correlate(vol, ref, tool.KNOWN_FRAMES.get(name))
        assert r >= 0.8, f"{name}: correlation {r:.3f} with the reference map"
