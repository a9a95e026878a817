"""Crowding without a shortcut (issue 26): neighbour gaps and counts drawn per box, and the context
control (each box without its target), including a control that fails on the touching shell."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from cryomonai.errors import ConfigError, CryoDataError
from cryomonai.evaluation.context import CONTEXT_COLUMN, context_table, context_valid
from cryomonai.io import read_particle_table
from cryomonai.io.mrc import read_mrc
from cryomonai.simulate.dataset import build_simulator, simulate_dataset
from cryomonai.simulate.imaging import ImagingParams, imaged_signal
from cryomonai.simulate.subtomogram import NEIGHBOUR_GAP, TOUCHING_SHELL, place_templates

SIZES = ("3qm1", "3gl1", "1bxn", "3d2f")  # bounding radii 3.2, 4.6, 6.7, 9.3 voxels


@pytest.fixture(scope="module")
def sim():
    return build_simulator(SIZES, 24, [2, 4], 2.0, ImagingParams())


def _neighbours_only(sim, seed: int, target: int) -> torch.Tensor:
    """The imaged crop of the same draw's neighbours alone (rendered directly, not by subtraction)."""
    lay = sim.layout(np.random.default_rng(seed), target)
    canvas = torch.zeros((sim.size,) * 3)
    place_templates(canvas, sim.templates[lay.classes[1:]], lay.centres_zyx[1:], lay.rotations[1:])
    return imaged_signal(canvas, sim.imaging)[sim.crop].float()


def test_context_box_is_the_box_without_its_target_under_the_same_noise(sim):
    """observed − context is the imaged target alone; context − (neighbours rendered alone) is the
    real box's noise, realisation and level; asking for the context draws nothing more."""
    for seed, target in ((3, 0), (4, 3)):
        p = sim(np.random.default_rng(seed), target=target, snr=0.1, context=True)
        plain = sim(np.random.default_rng(seed), target=target, snr=0.1)
        assert np.array_equal(p["observed"], plain["observed"]) and "context" not in plain
        assert np.allclose(p["observed"] - p["context"], p["target_signal"], atol=1e-5)
        noise = p["observed"] - p["signal"]
        assert np.allclose(p["context"] - _neighbours_only(sim, seed, target).numpy(), noise, atol=1e-5)
        assert p["n_neighbours"] >= 2 and np.abs(p["context"] - noise).max() > 0.1 * np.abs(p["signal"]).max()


def test_without_noise_the_difference_sits_on_the_target(sim):
    """Noise off: real − context is the filtered target, its energy concentrated around the target."""
    p = sim(np.random.default_rng(5), target=1, snr=math.inf, context=True)
    diff = (p["observed"] - p["context"]).astype(np.float64)
    centre = np.array(diff.shape) // 2 + p["shift"][::-1]  # (z, y, x)
    dist = np.linalg.norm(np.indices(diff.shape).T - centre, axis=-1).T
    near = dist <= sim.radii[1] + 4  # bounding radius + the CTF's spread
    assert (diff[near] ** 2).sum() > 0.9 * (diff**2).sum()
    assert np.allclose(p["context"], _neighbours_only(sim, 5, 1).numpy(), atol=1e-5)


@pytest.mark.parametrize("contact", ["largest", "target"])
def test_neighbour_gaps_are_drawn_per_neighbour_in_range_and_counts_per_box(contact):
    s = build_simulator(SIZES, 32, [0, 4], 8.0, ImagingParams(), neighbour_gap=[1.0, 6.0], neighbour_contact=contact)
    gaps, counts = [], []
    for i in range(60):
        lay = s.layout(np.random.default_rng([1, i]), i % 4)
        r0 = s.radii.max() if contact == "largest" else s.radii[i % 4]
        d = np.linalg.norm(lay.centres_zyx[1:] - lay.centres_zyx[0], axis=1)
        gaps.extend(d - r0 - s.radii[lay.classes[1:]])
        counts.append(len(lay.classes) - 1)
    gaps = np.array(gaps)
    assert gaps.min() >= 1.0 - 1e-9 and gaps.max() <= 6.0 + 1e-9 and gaps.std() > 1.0  # uniform on [1, 6]: std 1.44
    assert min(counts) == 0 and max(counts) == 4 and len(set(counts)) == 5


def test_defaults_and_bad_values():
    s = build_simulator(SIZES[:2], 16, [0, 4], 2.0, ImagingParams())
    assert s.neighbour_gap == NEIGHBOUR_GAP == (0.0, 8.0) and s.neighbour_contact == "largest"
    assert TOUCHING_SHELL == {"n_neighbours": 4, "neighbour_gap": (0.0, 2.0), "neighbour_contact": "target"}
    for bad in ({"neighbour_gap": [3, 1]}, {"neighbour_gap": -1}, {"neighbour_contact": "nearest"}):
        with pytest.raises(ConfigError):
            build_simulator(SIZES[:2], 16, 2, 2.0, ImagingParams(), **bad)


def test_dataset_writes_the_context_boxes_and_records_the_crowding(tmp_path):
    star = simulate_dataset(tmp_path / "d", n_per_class=2, snr=0.5, box=12, binning=2, classes=SIZES[:2], workers=0,
                            progress=False, context=True, max_shift=2.0, n_neighbours=[1, 3])
    table = read_particle_table(star)
    meta = json.loads((star.parent / "simulation.json").read_text())
    assert meta["neighbour_gap"] == [0.0, 8.0] and meta["neighbour_contact"] == "largest" and meta["context"]
    assert meta["n_neighbours"] == [1, 3]
    ctx = context_table(star)
    assert list(ctx.df["label"]) == list(table.df["label"]) and ctx.df["path"].str.endswith("_context.mrc").all()
    for obs_path, ctx_path in zip(table.df["path"], ctx.df["path"]):
        obs, ctx_vol = read_mrc(obs_path)[0], read_mrc(ctx_path)[0]
        assert obs.shape == ctx_vol.shape == (12, 12, 12) and not np.array_equal(obs, ctx_vol)
    plain = simulate_dataset(tmp_path / "p", n_per_class=1, snr=0.5, box=12, binning=2, classes=SIZES[:2], workers=0,
                             progress=False, n_neighbours=[1, 3])
    assert CONTEXT_COLUMN not in read_particle_table(plain).df
    with pytest.raises(CryoDataError, match=CONTEXT_COLUMN):
        context_table(plain)


def _radial_features(vol: np.ndarray) -> np.ndarray:
    """Mean and mean square of ``vol`` (S³) in 1-voxel shells about the box centre: (S,) features."""
    s = vol.shape[0]
    r = np.linalg.norm(np.indices(vol.shape).T - s // 2, axis=-1).T.astype(int).ravel()
    count = np.maximum(np.bincount(r, minlength=s)[: s // 2], 1)
    return np.concatenate([np.bincount(r, w.ravel(), minlength=s)[: s // 2] / count for w in (vol, vol * vol)])


def _context_accuracy(n_per_class: int = 40, **crowding) -> float:
    """5-fold accuracy of a logistic regression on radial profiles of *context* boxes (no target):
    4 classes of clearly different sizes, 24³, noise-free, the target within ±2 voxels of the centre."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    s = build_simulator(SIZES, 24, max_shift=2.0, imaging=ImagingParams(), **crowding)
    feats, labels = [], []
    for i in range(n_per_class * len(SIZES)):
        p = s(np.random.default_rng([7, i]), target=i % len(SIZES), snr=math.inf, context=True)
        feats.append(_radial_features(p["context"]))
        labels.append(p["label"])
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000))
    return float(cross_val_score(clf, np.array(feats), np.array(labels), cv=5).mean())


@pytest.mark.slow
def test_the_context_control_fails_on_the_touching_shell_and_passes_on_the_defaults():
    """The control can fail: with the touching shell the neighbours alone tell the class (measured
    0.79; 0.78–0.81 over data seeds 7, 8, 9; chance 0.25); with the defaults (0–4 neighbours, 0–8
    voxels beyond the largest template's contact) a context-only classifier stays near chance
    (0.26; 0.26–0.30). A 0–8 gap beyond the *target's* contact still leaks (0.36–0.45)."""
    torch.set_num_threads(1)
    chance = 1 / len(SIZES)
    touching = _context_accuracy(**TOUCHING_SHELL)
    free = _context_accuracy(n_neighbours=[0, 4])  # the defaults: gap 0–8, contact "largest"
    assert touching >= chance + 0.35 and not context_valid(touching, len(SIZES))
    assert free <= chance + 0.12 and context_valid(free, len(SIZES), tol=0.12)


def test_an_existing_dataset_simulated_otherwise_is_not_reused_silently(tmp_path):
    """ensure_dataset uses an existing table as it is, but warns when its simulation.json records
    other data-defining parameters (a record without neighbour_gap is the touching shell)."""
    import warnings

    from cryomonai.simulate.prepare import ensure_dataset

    kw = dict(n_per_class=1, snr=math.inf, box=12, classes=SIZES[:2], workers=0)
    table = ensure_dataset(tmp_path / "d" / "particles.star", progress=False, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ensure_dataset(table, progress=False, **kw) == table  # the same simulation: silent
        ensure_dataset(table, simulate=False)  # a table given as it is: nothing to compare
    with pytest.warns(UserWarning, match=r"n_neighbours=\[0, 4\] \(asked: 4\)"):
        ensure_dataset(table, progress=False, **kw, n_neighbours=4)
    record = table.parent / "simulation.json"
    meta = json.loads(record.read_text())
    del meta["neighbour_gap"], meta["neighbour_contact"]  # as written before issue 26
    record.write_text(json.dumps(meta))
    with pytest.warns(UserWarning, match="neighbour_gap=.*neighbour_contact='target'"):
        ensure_dataset(table, progress=False, **kw)


def test_the_touching_shell_draws_exactly_as_before():
    """TOUCHING_SHELL reproduces the simulator before issue 26 (layouts recorded with that code,
    commit cd12742, ``build_simulator(SIZES, 32, 4, 8.0, ImagingParams())``)."""
    recorded = [
        ([0, 2, 1, 3, 0], [[36.880047, 36.927053, 32.245209], [38.011981, 31.224921, 24.147964],
                           [35.475899, 42.207912, 25.759709], [26.497288, 32.591896, 39.141694],
                           [44.080253, 34.737302, 35.080139]]),
        ([1, 3, 3, 3, 2], [[36.387267, 31.531563, 35.134086], [39.054376, 18.390306, 41.436021],
                           [23.114076, 31.547142, 28.771289], [35.65683, 35.292521, 49.875894],
                           [42.853048, 36.266194, 26.960988]]),
    ]
    s = build_simulator(SIZES, 32, max_shift=8.0, imaging=ImagingParams(), **TOUCHING_SHELL)
    for i, (classes, centres) in enumerate(recorded):
        lay = s.layout(np.random.default_rng([5, i]), i)
        assert lay.classes.tolist() == classes and np.allclose(lay.centres_zyx, centres, atol=1e-6)


def test_what_users_run_simulates_crowding_without_the_shortcut():
    """The bundle's simulated set (``python -m monai.bundle run …`` on built-in data) and the main job's
    presets draw the shortcut-free crowding: the simulator's defaults (or the same values spelled out),
    never the touching shell, and the presets render the context control. Only the presets kept to
    reproduce committed history (``paper``, ``label_efficiency``) pin the old shell."""
    from monai.bundle import ConfigParser

    from cryomonai.experiment.preset import load_preset
    from cryomonai.simulate.subtomogram import N_NEIGHBOURS

    parser = ConfigParser()
    parser.read_config(str(Path(__file__).resolve().parents[1] / "bundles" / "cryo_ssl" / "configs" / "common.json"))
    sim = parser.get("simulation")
    crowding = {"n_neighbours": tuple(sim["n_neighbours"]), "neighbour_gap": tuple(sim["neighbour_gap"]),
                "neighbour_contact": sim["neighbour_contact"]}
    defaults = {"n_neighbours": tuple(N_NEIGHBOURS), "neighbour_gap": tuple(NEIGHBOUR_GAP),
                "neighbour_contact": "largest"}
    assert crowding == defaults and crowding != TOUCHING_SHELL
    for name in ("cpu", "cpu_full", "shipped", "confirm"):
        for ds in load_preset(name).datasets:
            assert ds.get("context_control") is True, (name, ds["name"])
            assert ds.get("neighbour_contact", "largest") == "largest", (name, ds["name"])
            assert tuple(ds.get("neighbour_gap", NEIGHBOUR_GAP)) == tuple(NEIGHBOUR_GAP), (name, ds["name"])
