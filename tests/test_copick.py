"""copick projects (cryomonai.io.copick), built with copick's own API on local storage, no mocks.

Two simulated tomograms become two runs of a copick project (OME-Zarr tomograms, one pick set per
class, points in Å). Reading the project must give the simulator's picks and labels; extraction
from it must equal extraction from the MRC tomograms; predictions written back must read back with
copick as one pick set per class under our user id, scores = probabilities, a rerun replacing them.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from cryomonai.data.extract import extract_subtomograms, read_picks
from cryomonai.errors import ConfigError, CryoDataError
from cryomonai.io import read_mrc
from cryomonai.io.copick import DEFAULT_USER, RUN, VOXEL_SIZE, read_copick_picks, write_copick_predictions
from cryomonai.io.predictions import MAX_PROBABILITY
from cryomonai.io.table import ParticleTable
from cryomonai.simulate.tomogram import simulate_tomogram

copick = pytest.importorskip("copick")

CLASSES = ("1bxn", "3j9i", "1s3x")
SHAPE = (40, 96, 96)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("copick")
    plain = dict(apply_ctf=False, tilt_range=None)
    stars = {f"TS_{i}": simulate_tomogram(root / f"t{i}", SHAPE, n_particles=8, snr=math.inf, classes=CLASSES,
                                          box=24, imaging=plain, seed=i) for i in (1, 2)}
    from conftest import build_copick_project

    return {"root": root, "stars": stars, "config": build_copick_project(root / "project", stars, CLASSES)}


def _sorted(xyz: np.ndarray) -> np.ndarray:
    return np.array(sorted(map(tuple, np.round(xyz, 4))))


def test_reading_a_project_gives_the_picks_labels_and_tomograms(project: dict) -> None:
    table = read_picks(project["config"])  # what `cryomonai extract <config.json>` and the bundle read
    assert table.class_names == list(CLASSES) and len(table) == 16
    assert set(table.df[RUN]) == {"TS_1", "TS_2"} and set(table.df[VOXEL_SIZE]) == {10.0}
    for run, star in project["stars"].items():
        mine, truth = table.df[table.df[RUN] == run], read_picks(star).df
        assert all(Path(t).name == "wbp.zarr" and Path(t).is_dir() for t in mine["tomogram"])
        for cls in CLASSES:
            np.testing.assert_allclose(_sorted(mine.loc[mine["label"] == cls, ["x", "y", "z"]].to_numpy(float)),
                                       _sorted(truth.loc[truth["label"] == cls, ["x", "y", "z"]].to_numpy(float)),
                                       atol=1e-4)
    assert (table.df["label_index"] == [CLASSES.index(c) for c in table.df["label"]]).all()
    assert table.df["path"].isna().all() and table.df["split"].isna().all()


def test_extraction_from_the_project_equals_extraction_from_the_mrc_tomograms(project: dict, tmp_path) -> None:
    table = read_copick_picks(project["config"], tomo_type="wbp", runs=["TS_1"])
    from_copick = extract_subtomograms(table, tmp_path / "copick", box=16, progress=False)
    star = project["stars"]["TS_1"]
    from_mrc = extract_subtomograms(star, tmp_path / "mrc", box=16, progress=False)
    assert from_copick.n_extracted == from_mrc.n_extracted > 0

    def boxes(result) -> dict:
        return {(round(r.x, 3), round(r.y, 3), round(r.z, 3)): read_mrc(r.path)[0]
                for r in read_picks(result.table).df.itertuples()}

    a, b = boxes(from_copick), boxes(from_mrc)
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_allclose(a[key], b[key], atol=1e-4)


def test_several_pick_sets_of_one_object_need_a_choice(project: dict, tmp_path) -> None:
    from conftest import build_copick_project

    config = build_copick_project(tmp_path / "p", {"TS_1": project["stars"]["TS_1"]}, CLASSES)
    run = copick.from_file(str(config)).get_run("TS_1")
    run.new_picks("1bxn", session_id="7", user_id="someone").from_numpy(np.array([[300.0, 400.0, 200.0]]))
    with pytest.raises(ConfigError, match=r"object 1bxn: picks from 2 pick sets.*choose one with user_id") as err:
        read_copick_picks(config)
    assert "\n" not in str(err.value)
    assert len(read_copick_picks(config, user_id="curator")) == 8
    only = read_copick_picks(config, user_id="someone", objects=["1bxn"])
    assert len(only) == 1 and list(only.df["x"]) == [30.0]
    with pytest.raises(ConfigError, match=r"no particle object named \['ribosome'\]"):
        read_copick_picks(config, objects=["ribosome"])
    with pytest.raises(ConfigError, match=r"no tomogram of type denoised"):
        read_copick_picks(config, tomo_type="denoised")
    with pytest.raises(CryoDataError, match="cannot open the copick project"):
        read_copick_picks(tmp_path / "missing.json")


def test_predictions_go_back_as_one_pick_set_per_class(project: dict, tmp_path) -> None:
    from conftest import build_copick_project

    config = build_copick_project(tmp_path / "p", project["stars"], CLASSES)
    table = read_copick_picks(config)
    rng = np.random.default_rng(0)

    def predict(seed_shift: int) -> ParticleTable:
        df = table.df.copy()
        df["label"] = [CLASSES[(CLASSES.index(c) + seed_shift) % 3] for c in df["label"]]
        df[MAX_PROBABILITY] = rng.uniform(0.4, 1.0, len(df))
        df.index = np.arange(len(df))[::-1] * 2 + 7  # row labels that are not positions: scores follow the labels
        return ParticleTable(df, list(CLASSES), table.source)

    first = predict(1)
    counts = write_copick_predictions(first, config)
    assert sum(counts.values()) == len(table) and set(counts) == {(r, c) for r in ("TS_1", "TS_2") for c in CLASSES}
    root = copick.from_file(str(config))  # read back with copick itself
    for run_name in ("TS_1", "TS_2"):
        run = root.get_run(run_name)
        ours = run.get_picks(user_id=DEFAULT_USER)
        assert sorted(p.pickable_object_name for p in ours) == sorted(CLASSES)
        for picks in ours:
            rows = first.df[(first.df[RUN] == run_name) & (first.df["label"] == picks.pickable_object_name)]
            np.testing.assert_allclose(_sorted(picks.full_positions()), _sorted(rows[["x", "y", "z"]].to_numpy() * 10),
                                       atol=1e-3)
            np.testing.assert_allclose(np.sort(picks.scores()), np.sort(rows[MAX_PROBABILITY].to_numpy()), atol=1e-6)
        assert len(run.get_picks(user_id="curator")) == 3  # the curator's picks are untouched
    second = predict(2)  # a rerun replaces our sets: no stale points
    write_copick_predictions(second, config)
    run = copick.from_file(str(config)).get_run("TS_1")
    got = {p.pickable_object_name: len(p.points) for p in run.get_picks(user_id=DEFAULT_USER)}
    want = second.df[second.df[RUN] == "TS_1"]["label"].value_counts().to_dict()
    assert got == {c: want.get(c, 0) for c in CLASSES}


def test_predictions_not_from_copick_or_with_unknown_classes_are_refused(project: dict) -> None:
    table = read_picks(project["stars"]["TS_1"])
    with pytest.raises(CryoDataError, match="has no copickRun column"):
        write_copick_predictions(table, project["config"])
    copied = read_copick_picks(project["config"])
    with pytest.raises(CryoDataError, match=r"no pickable object for the classes \['ribosome'\]"):
        write_copick_predictions(ParticleTable(copied.df, ["ribosome", *CLASSES[1:]], copied.source),
                                 project["config"])
