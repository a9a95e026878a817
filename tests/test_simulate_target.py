"""The labelled target: the particle nearest the box centre, and its SNR next to the whole box's."""

import inspect
import math
from pathlib import Path

import numpy as np
import pytest

from cryomonai.experiment.preset import preset_spec
from cryomonai.simulate.dataset import build_simulator, simulate_dataset
from cryomonai.simulate.imaging import ImagingParams
from cryomonai.simulate.subtomogram import TOUCHING_SHELL
from cryomonai.simulate.templates import SHREC_10

GRID = Path(__file__).resolve().parents[1] / "bundles" / "cryo_ssl" / "configs" / "grid"
SMALL = ("3qm1", "1s3x", "1bxn")  # two small complexes and a large one
DEFAULTS = {k: p.default for k, p in inspect.signature(simulate_dataset).parameters.items()}


def _geometry_cases() -> list[tuple[str, dict]]:
    """The simulator's defaults, then every dataset entry of every grid preset (read here, so a new
    preset is covered): simulate_dataset kwargs over its defaults."""
    cases = [("defaults", dict(DEFAULTS))]
    for preset in sorted(GRID.glob("*.json")):
        for ds in preset_spec(preset)["datasets"]:  # with its base's datasets (presets inherit)
            if "table" in ds:  # a user's particles, not simulated
                continue
            cases.append((f"{preset.stem}:{ds['name']}", {**DEFAULTS, **ds}))
    return cases


@pytest.mark.parametrize("kw", [kw for _, kw in _geometry_cases()], ids=[name for name, _ in _geometry_cases()])
def test_target_is_the_particle_nearest_the_box_centre(kw):
    """Over 1,000 draws, in ≥ 99 % the target's centre is nearer the box centre than every placed
    neighbour's (max_shift is in unbinned voxels: the geometry is drawn at box × binning), and the
    crowding is kept (≥ 95 % of the requested neighbours placed on average)."""
    classes = tuple(kw["classes"] or SHREC_10)
    binning = int(kw["binning"])
    box = int(kw["box"]) * binning
    sim = build_simulator(classes, box, kw["n_neighbours"], float(kw["max_shift"]), ImagingParams(),
                          kw["neighbour_gap"], kw["neighbour_contact"])
    n, nearest, placed = 1000, 0, 0
    for i in range(n):
        lay = sim.layout(np.random.default_rng([int(kw["seed"]), i]), target=i % len(classes))
        dist = np.linalg.norm(lay.centres_zyx - sim.centre, axis=1)  # row 0 is the target
        assert np.allclose(lay.centres_zyx[0], sim.centre + lay.shift_zyx)
        nearest += bool(np.all(dist[1:] > dist[0]))
        placed += len(dist) - 1
    assert nearest / n >= 0.99
    assert placed / n >= 0.95 * np.mean(sim.neighbour_range)  # a range [lo, hi] draws (lo + hi) / 2 on average


def test_layout_is_a_function_of_the_generator_and_matches_the_subtomogram():
    sim = build_simulator(SMALL, 32, 4, 8.0, ImagingParams())
    a, b = sim.layout(np.random.default_rng(4), 1), sim.layout(np.random.default_rng(4), 1)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    p = sim(np.random.default_rng(4), target=1, snr=math.inf)
    assert np.allclose(p["shift"], a.shift_zyx[::-1]) and p["n_neighbours"] == len(a.classes) - 1


@pytest.fixture(scope="module")
def sim():
    return build_simulator(SMALL, box=32, max_shift=8.0, imaging=ImagingParams(), **TOUCHING_SHELL)


def test_measured_box_snr_is_the_requested_snr(sim):
    """Default (split) noise: var(imaged box) / var(noise) measured in the box is the requested SNR
    (one noise realisation of a 32³ box, so within 10 %)."""
    for i, snr in enumerate((0.03, 0.05, 0.5)):
        p = sim(np.random.default_rng([9, i]), target=i % 3, snr=snr)
        assert p["snr"] == snr and p["snr_box"] == pytest.approx(snr, rel=0.1)  # one realisation: ±~4 % scatter
        noise = p["observed"] - p["signal"]
        assert p["snr_box"] == pytest.approx(p["signal"].var() / noise.var(), rel=1e-4)
        assert p["snr_target"] == pytest.approx(p["target_signal"].var() / noise.var(), rel=1e-4)


def test_aitom_box_snr_is_aitoms_nominal_snr_carried_to_the_box():
    """noise_model="aitom": AITom's noise variance is set by the whole imaged map (as AITom images its
    packing map, then trims), so the box SNR measured is the derived var(signal in the box) /
    (σ²·(g₁ + g₂)) — not the nominal 0.05 (8 realisations pooled: within 8 %)."""
    import torch

    from cryomonai.simulate.imaging import _aitom_terms, aitom_noise_variance
    from cryomonai.simulate.subtomogram import place_templates

    params = ImagingParams(noise_model="aitom")
    sim = build_simulator(SMALL, 32, max_shift=8.0, imaging=params, **TOUCHING_SHELL)  # the docstring's ≈ 3× nominal
    _, _, _, g1, g2 = _aitom_terms((sim.size,) * 3, params)
    for i in range(3):
        p = sim(np.random.default_rng([11, i]), target=i, snr=0.05, n_realisations=8)
        lay = sim.layout(np.random.default_rng([11, i]), i)  # the same draw: rebuild the imaged map
        density = torch.zeros((sim.size,) * 3)
        place_templates(density, sim.templates[lay.classes], lay.centres_zyx, lay.rotations)
        derived = p["signal"].var() / (aitom_noise_variance(density, 0.05, params) * (g1 + g2))
        assert p["snr_box"] == pytest.approx(derived, rel=0.08)
        assert p["snr_box"] > 0.08  # ≈ 0.1–0.2: the box holds more than its share of the map's signal


def test_target_snr_is_below_the_box_snr_with_neighbours(sim):
    """The neighbours' imaged density is part of the box signal but not of the target's."""
    for i in range(6):
        p = sim(np.random.default_rng([21, i]), target=i % 3, snr=0.05)
        assert p["n_neighbours"] >= 1 and p["snr_target"] < p["snr_box"]
    lone = build_simulator(SMALL, 32, 0, 8.0, ImagingParams())(np.random.default_rng(3), target=0, snr=0.05)
    assert lone["snr_target"] == pytest.approx(lone["snr_box"], rel=1e-6)  # target alone = the whole box


def test_no_noise_gives_infinite_snrs(sim):
    p = sim(np.random.default_rng(1), target=2, snr=math.inf)
    assert p["snr_box"] == p["snr_target"] == math.inf


def test_dataset_table_records_both_snrs_and_round_trips(tmp_path):
    from cryomonai.io.table import read_particle_table

    args = dict(n_per_class=2, classes=SMALL, box=24, workers=0, progress=False)
    star = simulate_dataset(tmp_path / "noisy", snr=0.05, **args)
    for table in (star, star.with_suffix(".csv")):
        df = read_particle_table(table).df
        assert (df["cryoSNR"] == 0.05).all()
        assert np.allclose(df["cryoSNRBox"], 0.05, rtol=0.1)
        crowded = df["cryoNeighbours"] > 0  # 0–4 neighbours by default: an isolated target is the whole box
        assert crowded.any() and (df["cryoSNRTarget"][crowded] < df["cryoSNRBox"][crowded]).all()
        assert np.allclose(df["cryoSNRTarget"][~crowded], df["cryoSNRBox"][~crowded]) and (df["cryoSNRTarget"] > 0).all()
    csv = read_particle_table(star.with_suffix(".csv")).df
    star_df = read_particle_table(star).df  # STAR holds 6 decimals (starfile's "%.6f"), CSV full precision
    cols = ["cryoSNRBox", "cryoSNRTarget"]
    assert np.allclose(star_df[cols], csv[cols], rtol=0, atol=1e-6)
    clean = read_particle_table(simulate_dataset(tmp_path / "clean", snr=math.inf, **args)).df
    assert np.isinf(clean["cryoSNRBox"]).all() and np.isinf(clean["cryoSNRTarget"]).all()


def test_binned_dataset_records_the_snr_of_the_binned_box(tmp_path):
    """Binning removes the noise above the new Nyquist: the box SNR written is that of the binned data."""
    from cryomonai.io.mrc import read_mrc
    from cryomonai.io.table import read_particle_table

    star = simulate_dataset(tmp_path / "b", n_per_class=1, classes=SMALL, box=12, binning=2, snr=0.05, workers=0,
                            progress=False, n_neighbours=[1, 4])
    df = read_particle_table(star).df
    assert (df["cryoSNRBox"] > 1.5 * 0.05).all() and (df["cryoSNRTarget"] < df["cryoSNRBox"]).all()
    assert read_mrc(df["path"][0])[0].shape == (12, 12, 12)
