"""Simulator: geometry, crowded subtomograms, the dataset writer and the whole-tomogram mode."""

import json
import math

import numpy as np
import pytest
import torch

from cryomonai.errors import ConfigError
from cryomonai.io import read_particle_table
from cryomonai.simulate.dataset import build_simulator
from cryomonai.simulate.geometry import (
    euler_zyz,
    matrix_from_euler_zyz,
    pack_neighbours,
    random_rotations,
    rotate_shift,
)
from cryomonai.physics.wedge import missing_wedge_mask
from cryomonai.simulate.imaging import ImagingParams
from cryomonai.simulate.subtomogram import place_templates
from cryomonai.simulate.templates import load_templates

SMALL = ("3qm1", "1s3x", "1bxn")  # two small complexes and a large one


def com(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=float)
    return np.array([(i * v).sum() / v.sum() for i in np.indices(v.shape)])


@pytest.fixture(scope="module")
def sim():
    return build_simulator(SMALL, box=32, n_neighbours=4, max_shift=8.0, imaging=ImagingParams())


def test_euler_round_trip_and_uniform_rotations():
    r = random_rotations(np.random.default_rng(0), 2000)
    assert np.allclose(matrix_from_euler_zyz(euler_zyz(r)), r, atol=1e-6)
    # Haar measure: the rotated z axis is uniform on the sphere → its z component is uniform on [-1, 1]
    zc = r[:, 2, 2]
    assert abs(zc.mean()) < 0.05 and np.var(zc) == pytest.approx(1 / 3, rel=0.1)


def test_rotate_shift_90_about_z_is_rot90_and_shift_moves_mass():
    v = torch.zeros(1, 16, 16, 16)
    v[0, 6:9, 8:10, 8:14] = 1.0  # elongated along x, off centre
    rz = np.array([[[0.0, -1, 0], [1, 0, 0], [0, 0, 1]]])  # x → y (rotation about the beam axis z)
    out = rotate_shift(v, rz)[0].numpy()
    expected = np.zeros_like(out)  # quarter turn about voxel 8: (x, y) → (16 − y, x)
    for z, y, x in np.argwhere(v[0].numpy() > 0):
        expected[z, x, 16 - y] = 1.0
    assert np.allclose(out, expected, atol=1e-5)
    moved = rotate_shift(v, np.eye(3)[None], np.array([[0.0, 2.0, -1.5]]))[0].numpy()  # (x, y, z) shift
    assert np.allclose(com(moved) - com(v[0].numpy()), [-1.5, 2.0, 0.0], atol=0.05)


def test_packing_has_no_overlap():
    rng = np.random.default_rng(3)
    radii = rng.uniform(3, 10, size=6)
    c, ok = pack_neighbours(rng, np.zeros(3), 8.0, radii)
    assert ok.sum() >= 4
    pts, rr = c[ok], radii[ok]
    assert np.all(np.linalg.norm(pts, axis=1) >= 8.0 + rr - 1e-9)  # touch, never enter, the target
    for i in range(len(pts)):
        for j in range(i):
            assert np.linalg.norm(pts[i] - pts[j]) >= rr[i] + rr[j] - 1e-9


def test_subtomogram_shapes_seed_and_record(sim):
    a = sim(np.random.default_rng([7, 1]), target=2, snr=0.05)
    b = sim(np.random.default_rng([7, 1]), target=2, snr=0.05)
    c = sim(np.random.default_rng([7, 2]), target=2, snr=0.05)
    assert a["observed"].shape == a["clean"].shape == (32, 32, 32) and a["observed"].dtype == np.float32
    assert np.array_equal(a["observed"], b["observed"]) and not np.array_equal(a["observed"], c["observed"])
    assert np.isfinite(a["observed"]).all() and a["label"] == 2 and 1 <= a["n_neighbours"] <= 4
    # the recorded rotation and shift reproduce the clean target box exactly
    t = sim.templates[2:3]
    canvas = torch.zeros((sim.size,) * 3)
    place_templates(canvas, t, (sim.centre + a["shift"][::-1])[None], matrix_from_euler_zyz(a["euler"]))
    assert np.allclose(canvas[sim.crop].numpy(), a["clean"], atol=1e-5)


def test_target_density_is_at_centre_plus_shift(sim):
    temps = load_templates(SMALL)
    for i in range(5):
        p = sim(np.random.default_rng([11, i]), target=i % 3, snr=math.inf)
        expected = 16 + p["shift"][::-1]  # crop centre voxel box//2 plus the (x,y,z) shift, as (z,y,x)
        assert np.abs(np.abs(p["shift"]).max()) <= 8.0
        tpl_offset = com(temps[SMALL[i % 3]]) - 16  # template COM vs its box centre (≈ 0)
        assert np.linalg.norm(com(p["clean"]) - expected) < 1.0 + np.linalg.norm(tpl_offset)


def test_missing_wedge_present_in_fourier_space(sim):
    p = sim(np.random.default_rng(5), target=0, snr=math.inf)
    w = missing_wedge_mask((32, 32, 32), (-60, 60)).numpy()
    power = np.abs(np.fft.fftn(p["observed"])) ** 2
    # only cropping the map leaks power into the wedge: 4-12 % over draws, depending on where the
    # neighbours are cut by the box edge (without a wedge this ratio is about 1)
    assert power[~w].mean() < 0.2 * power[w].mean()
    q = sim(np.random.default_rng(5), target=0, snr=0.05)  # noise is wedge-masked too
    power = np.abs(np.fft.fftn(q["observed"])) ** 2
    assert power[~w].mean() < 0.05 * power[w].mean()


def test_snr_of_simulated_subtomogram(sim):
    """Two noise realisations of one particle: SNR = ρ/(1−ρ) (averaged over pairs), within 15 %."""
    for snr in (0.05, 0.5):
        p = sim(np.random.default_rng(9), target=1, snr=snr, n_realisations=12)
        c = np.corrcoef(p["observed"].reshape(12, -1))
        rho = c[np.triu_indices(12, 1)].mean()
        assert rho / (1 - rho) == pytest.approx(snr, rel=0.15)
        assert p["signal"].var() / (p["observed"] - p["signal"]).var() == pytest.approx(snr, rel=0.05)


def test_crowding_adds_neighbour_density(sim):
    p = sim(np.random.default_rng(2), target=0, snr=math.inf)
    lone = build_simulator(SMALL, 32, 0, 8.0, ImagingParams())(np.random.default_rng(2), target=0, snr=math.inf)
    assert p["n_neighbours"] >= 2 and lone["n_neighbours"] == 0
    # same target draw, plus neighbours → the observed box holds more signal than the target alone
    assert np.abs(p["signal"]).sum() > 1.2 * np.abs(lone["signal"]).sum()


def test_a_neighbour_range_varies_the_crowding_and_a_count_draws_nothing(sim):
    varied = build_simulator(SMALL, 32, [0, 4], 8.0, ImagingParams())
    placed = [varied.layout(np.random.default_rng(i), target=0).classes.size - 1 for i in range(200)]
    counts = np.bincount(placed, minlength=5)
    assert counts[0] >= 20 and counts[1:].sum() >= 100 and max(placed) <= 4  # isolated and crowded boxes alike
    fixed = build_simulator(SMALL, 32, [4, 4], 8.0, ImagingParams())  # [n, n] is n: the same draws as before
    a, b = sim(np.random.default_rng(3), target=1, snr=0.05), fixed(np.random.default_rng(3), target=1, snr=0.05)
    assert np.array_equal(a["observed"], b["observed"]) and a["n_neighbours"] == b["n_neighbours"]
    for bad in (-1, [3, 1], [0, 1, 2], 2.5):
        with pytest.raises(ConfigError, match="n_neighbours"):
            build_simulator(SMALL, 32, bad, 8.0, ImagingParams())


def test_a_dataset_with_varied_crowding_records_each_count(tmp_path):
    table = read_particle_table(_dataset(tmp_path, "varied", snr=math.inf, n_per_class=10, n_neighbours=[0, 3]))
    placed = table.df["cryoNeighbours"].astype(int)
    assert placed.min() == 0 and placed.max() >= 2 and placed.max() <= 3
    meta = json.loads((tmp_path / "varied" / "simulation.json").read_text())
    assert meta["n_neighbours"] == [0, 3]


def _dataset(tmp_path, name, **kw):
    from cryomonai.simulate.dataset import simulate_dataset

    args = dict(n_per_class=5, classes=SMALL, box=24, snr=0.05, workers=0, progress=False)
    args.update(kw)
    return simulate_dataset(tmp_path / name, **args)


def test_dataset_written_as_particle_table(tmp_path):
    from cryomonai.io.mrc import read_mrc
    from cryomonai.io.table import read_particle_table

    star = _dataset(tmp_path, "a")
    t = read_particle_table(star)
    assert t.class_names == list(SMALL) and len(t) == 15
    assert (t.df["label_index"].value_counts() == 5).all()
    assert sorted(t.df["split"].value_counts().to_dict().items()) == [("test", 3), ("train", 9), ("val", 3)]
    vol, voxel = read_mrc(t.df["path"][4])
    assert vol.shape == (24, 24, 24) and voxel == pytest.approx(10.0)
    assert read_particle_table(star.with_suffix(".csv")).df["path"].tolist() == t.df["path"].tolist()
    clean = np.load(star.parent / "clean.npy")
    assert clean.shape == (15, 24, 24, 24) and clean.dtype == np.float16
    assert not (tmp_path / "a.partial").exists() and (star.parent / "simulation.json").exists()
    with pytest.raises(Exception, match="already exists"):
        _dataset(tmp_path, "a")


def test_dataset_is_a_function_of_the_seed_not_of_the_workers(tmp_path):
    from cryomonai.io.mrc import read_mrc

    a, b = _dataset(tmp_path, "a", seed=3), _dataset(tmp_path, "b", seed=3, workers=2)
    c = _dataset(tmp_path, "c", seed=4)
    for i in (0, 7, 14):
        va = read_mrc(a.parent / f"subtomograms/{i:06d}.mrc")[0]
        assert np.array_equal(va, read_mrc(b.parent / f"subtomograms/{i:06d}.mrc")[0])
        assert not np.array_equal(va, read_mrc(c.parent / f"subtomograms/{i:06d}.mrc")[0])
    assert a.read_text().split("\n", 2)[2] == b.read_text().split("\n", 2)[2]  # the table too (after the timestamp)


def test_synthetic_tomogram_has_particles_at_the_recorded_coordinates(tmp_path):
    import starfile

    from cryomonai.io.mrc import read_mrc
    from cryomonai.io.table import read_particle_table
    from cryomonai.simulate.tomogram import simulate_tomogram

    plain = dict(apply_ctf=False, tilt_range=None)  # band-pass only: density stays positive and local
    star = simulate_tomogram(tmp_path / "t", (40, 96, 96), n_particles=12, snr=math.inf, classes=SMALL, imaging=plain)
    tomo, voxel = read_mrc(star.parent / "tomogram.mrc")
    assert tomo.shape == (40, 96, 96) and voxel == pytest.approx(10.0)
    table = read_particle_table(star)
    assert len(table) >= 8 and table.class_names == list(SMALL)
    xyz = table.df[["x", "y", "z"]].to_numpy().astype(int)
    at_picks = np.array([tomo[z - 1 : z + 2, y - 1 : y + 2, x - 1 : x + 2].mean() for x, y, z in xyz])
    assert at_picks.min() > tomo.mean() + 2 * tomo.std()  # every pick sits on a particle
    raw = starfile.read(star, always_dict=True)["particles"]
    assert {"rlnMicrographName", "rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ", "rlnClassNumber"} <= set(raw)
    assert (raw["rlnMicrographName"] == "tomogram.mrc").all()
    # imaged with the default model and noise: same picks for the same seed, noisy volume, no NaN
    noisy = simulate_tomogram(tmp_path / "n", (40, 96, 96), n_particles=12, snr=0.05, classes=SMALL)
    assert read_particle_table(noisy).df[["x", "y", "z"]].to_numpy().astype(int).tolist() == xyz.tolist()
    assert np.isfinite(read_mrc(noisy.parent / "tomogram.mrc")[0]).all()


def test_in_process_simulation_keeps_the_callers_thread_count(tmp_path):
    before = torch.get_num_threads()
    _dataset(tmp_path, "t", n_per_class=1)
    assert torch.get_num_threads() == before


def test_packing_keeps_the_target_nearest_the_box_centre():
    """With box_centre, every placed neighbour is ≥ margin farther from it than the target; the
    non-overlap rule still holds and the result is a function of the generator."""
    radii = np.array([6.0, 9.0, 4.0, 7.0])
    target, box_centre = np.array([5.0, -4.0, 3.0]), np.zeros(3)
    for seed in range(20):
        c, ok = pack_neighbours(np.random.default_rng(seed), target, 7.0, radii, box_centre=box_centre, margin=2.0)
        c2, ok2 = pack_neighbours(np.random.default_rng(seed), target, 7.0, radii, box_centre=box_centre, margin=2.0)
        assert np.array_equal(ok, ok2) and np.array_equal(c[ok], c2[ok2]) and ok.sum() >= 3
        assert np.all(np.linalg.norm(c[ok], axis=1) >= np.linalg.norm(target) + 2.0 - 1e-9)
        pts, rr = c[ok], radii[ok]
        assert np.all(np.linalg.norm(pts - target, axis=1) >= 7.0 + rr - 1e-9)
        for i in range(len(pts)):
            for j in range(i):
                assert np.linalg.norm(pts[i] - pts[j]) >= rr[i] + rr[j] - 1e-9


@pytest.mark.parametrize("model", ["filtered", "aitom"])
def test_noise_model_is_a_dataset_kwarg_recorded_in_simulation_json(tmp_path, model):
    """A grid preset's dataset entry (simulate_dataset kwargs) can choose the noise model; it is
    recorded, it changes only the noise (and, for "aitom", AITom's band-pass of the signal), and
    giving two different ones is a user error."""
    import json

    from cryomonai.io.mrc import read_mrc
    from cryomonai.io.table import read_particle_table

    entry = {"name": "f", "snr": 0.05, "noise_model": model, "n_per_class": 1, "box": 16}
    star = _dataset(tmp_path, "f", **{k: v for k, v in entry.items() if k != "name"})
    meta = json.loads((star.parent / "simulation.json").read_text())
    assert meta["noise_model"] == meta["imaging"]["noise_model"] == model
    df = read_particle_table(star).df
    assert (df["cryoSNR"] == 0.05).all() and np.isfinite(df["cryoSNRBox"]).all() and (df["cryoSNRBox"] > 0).all()
    split = _dataset(tmp_path, "s", snr=0.05, n_per_class=1, box=16)
    assert json.loads((split.parent / "simulation.json").read_text())["noise_model"] == "split"
    a, b = (read_mrc(t.parent / "subtomograms/000000.mrc")[0] for t in (star, split))
    assert not np.array_equal(a, b)
    assert np.array_equal(np.load(star.parent / "clean.npy"), np.load(split.parent / "clean.npy"))  # same particles
    with pytest.raises(ConfigError, match="noise_model"):
        _dataset(tmp_path, "x", noise_model="split", imaging={"noise_model": model})


def test_preview_shows_each_snr_in_each_noise_model():
    from cryomonai.simulate.preview import preview_volumes

    grid, titles, centres = preview_volumes(SMALL[:2], box=16, n_neighbours=2)
    assert titles == ["clean target", "SNR ∞ (no noise)", "SNR 0.05, split", "SNR 0.03, split",
                      "SNR 0.05, filtered", "SNR 0.03, filtered", "SNR 0.05, aitom", "SNR 0.03, aitom"]
    assert list(grid) == list(SMALL[:2]) and all(len(v) == len(titles) for v in grid.values())
    vols = grid[SMALL[0]]
    assert all(v.shape == (16, 16, 16) for v in vols) and all(0 <= c < 16 for c in centres[SMALL[0]])
    noise = [v - vols[1] for v in vols[2:]]  # same particle in every column: only the noise differs
    assert noise[1].var() > noise[0].var() and noise[3].var() > noise[2].var()  # SNR 0.03 noisier than 0.05
    assert noise[5].var() > noise[4].var()  # aitom: its own signal (AITom's band-pass) + noise, same order


def test_dead_worker_is_one_line_error(tmp_path):
    """A script without a ``__main__`` guard makes every spawned worker re-run it and die: the caller
    gets one ConfigError naming the fix, and no dataset folder is left behind."""
    import subprocess
    import sys

    out = tmp_path / "ds"
    script = tmp_path / "no_guard.py"
    script.write_text("from cryomonai.simulate.dataset import simulate_dataset\n"
                      f"simulate_dataset({str(out)!r}, n_per_class=1, box=16, classes=('1bxn', '1qvr'), workers=1, progress=False)\n")
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert run.returncode != 0
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("cryomonai.errors.ConfigError: simulate_dataset(workers=1): a simulation worker process died")
    assert 'if __name__ == "__main__":' in last and "workers=0" in last
    assert not out.exists()
