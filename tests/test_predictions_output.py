"""Predictions ready for the next tool: the probability filter, one STAR file per class, the RELION-3/4
(voxel) and RELION-5 (centred Å) conventions with round trips, and the bundle keys that set them.

Hand-made tables on two small MRC tomograms; no training (the bundle's inference itself is
``tests/test_inference.py``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import starfile

from cryomonai.data.extract import read_picks
from cryomonai.engines.predictions import ParticlePredictionsWriter
from cryomonai.errors import ConfigError, CryoDataError
from cryomonai.io import ParticleTable, read_particle_table, write_mrc
from cryomonai.io.predictions import MAX_PROBABILITY, ORIGINS, filter_predictions, write_star_and_csv
from cryomonai.io.relion5 import CENTRED

CLASSES = ["1bxn", "3j9i", "1s3x"]
VOXEL = 10.0
SHAPES = {"TS_01": (20, 30, 40), "TS_02": (16, 24, 36)}  # (z, y, x) voxels
# tomogram, x, y, z (voxels), predicted class, its probability
ROWS = [
    ("TS_01", 4.0, 5.0, 6.0, "1bxn", 0.95),
    ("TS_01", 20.5, 10.0, 3.0, "3j9i", 0.40),
    ("TS_01", 39.0, 29.0, 19.0, "1bxn", 0.70),
    ("TS_02", 0.0, 12.0, 8.0, "1s3x", 0.69),
    ("TS_02", 18.0, 23.0, 15.5, "3j9i", 0.99),
]
RELION3_STAR = {"rlnMicrographName", "rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ", *ORIGINS}


@pytest.fixture()
def predictions(tmp_path: Path) -> tuple[pd.DataFrame, Path]:
    """A picks table (STAR, tomograms as absolute paths) of :data:`ROWS` + prediction columns, and its folder."""
    folder = tmp_path / "input"
    folder.mkdir()
    for name, shape in SHAPES.items():
        write_mrc(folder / f"{name}.mrc", np.zeros(shape, np.float32), voxel_size=VOXEL)
    df = pd.DataFrame({
        "tomogram": [str(folder / f"{r[0]}.mrc") for r in ROWS], "x": [r[1] for r in ROWS],
        "y": [r[2] for r in ROWS], "z": [r[3] for r in ROWS], "label": [r[4] for r in ROWS],
        "rlnAngleRot": np.arange(len(ROWS), dtype=float), MAX_PROBABILITY: [r[5] for r in ROWS],
    })
    return df, folder


def _table(df: pd.DataFrame, folder: Path) -> ParticleTable:
    """The predictions as a table with the model's classes (through a CSV, as a user would have it)."""
    df.to_csv(folder / "predicted.csv", index=False)
    return read_particle_table(folder / "predicted.csv", class_names=CLASSES)


@pytest.mark.parametrize("threshold, kept", [(0.0, [0, 1, 2, 3, 4]), (0.7, [0, 2, 4]), (0.69, [0, 2, 3, 4]),
                                             (1.0, [])])
def test_min_probability_keeps_the_rows_that_reach_it(predictions, threshold, kept) -> None:
    table = _table(*predictions)
    out = filter_predictions(table, threshold)
    assert out.df[MAX_PROBABILITY].tolist() == [ROWS[i][5] for i in kept]
    assert out.df["x"].tolist() == [ROWS[i][1] for i in kept]


@pytest.mark.parametrize("bad", [1.5, -0.1, float("nan"), "high"])
def test_min_probability_outside_0_1_is_refused_in_one_line(predictions, bad) -> None:
    with pytest.raises(ConfigError) as err:
        filter_predictions(_table(*predictions), bad)
    message = str(err.value)
    assert message.startswith("min_probability: ") and "between 0 and 1" in message and "\n" not in message
    with pytest.raises(ConfigError, match="between 0 and 1"):  # the writer refuses it before any inference
        ParticlePredictionsWriter(predictions[1], _table(*predictions), CLASSES, min_probability=bad)


@pytest.mark.parametrize("coordinates", ["auto", "relion3", "relion5"])
def test_split_by_class_writes_one_star_per_class_in_the_main_files_convention(predictions, tmp_path,
                                                                                coordinates) -> None:
    out = tmp_path / "out"
    out.mkdir()
    written = write_star_and_csv(_table(*predictions), out, "predictions", coordinates, split_by_class=True)
    main = starfile.read(written["star"], always_dict=True)["particles"]
    counts = {}
    for name in CLASSES:
        path = written[f"star:{name}"]
        assert path == out / f"predictions_{name}.star"
        loop = starfile.read(path, always_dict=True)["particles"]
        assert list(loop.columns) == list(main.columns)  # the same dialect as the main file
        counts[name] = len(loop)
        assert set(loop["rlnClassNumber"]) <= {CLASSES.index(name) + 1}
    assert counts == {"1bxn": 2, "3j9i": 2, "1s3x": 1} and sum(counts.values()) == len(main) == len(ROWS)
    centred = set(CENTRED) <= set(main.columns)
    assert centred == (coordinates == "relion5")
    assert (RELION3_STAR <= set(main.columns)) == (coordinates == "relion3")
    assert not list(out.glob(".*.tmp"))  # no temporary file left behind
    write_star_and_csv(_table(*predictions), out, "predictions", coordinates)  # a rerun without the split
    assert sorted(p.name for p in out.glob("*.star")) == ["predictions.star"] + (["tomograms.star"] if centred else [])


def test_relion3_output_reads_back_to_the_same_voxels(predictions, tmp_path) -> None:
    df, folder = predictions
    out = tmp_path / "out"
    out.mkdir()
    written = write_star_and_csv(_table(df, folder), out, "predictions", "relion3")
    loop = starfile.read(written["star"], always_dict=True)["particles"]
    assert not ({"rlnTomoName", *CENTRED} & set(loop.columns))
    assert (loop[list(ORIGINS)].to_numpy() == 0).all()
    assert list(loop["rlnMicrographName"]) == [f"../input/{r[0]}.mrc" for r in ROWS]  # relative to the STAR file
    back = read_particle_table(written["star"], check_files=False)
    np.testing.assert_array_equal(back.df[["x", "y", "z"]].to_numpy(float), df[["x", "y", "z"]].to_numpy(float))
    assert [str((out / t).resolve()) for t in back.df["tomogram"]] == list(df["tomogram"])
    assert list(back.df["label"]) == [r[4] for r in ROWS]


def test_relion5_output_and_back_through_relion3_keeps_the_voxels(predictions, tmp_path) -> None:
    """voxels → RELION 5 (centred Å + tomograms.star) → read as RELION 5 → RELION 3/4 → the same voxels."""
    df, folder = predictions
    first, second = tmp_path / "relion5", tmp_path / "relion3"
    first.mkdir(), second.mkdir()
    written = write_star_and_csv(_table(df, folder), first, "predictions", "relion5")
    loop = starfile.read(written["star"], always_dict=True)["particles"]
    assert loop.loc[0, CENTRED[0]] == pytest.approx((4.0 - 40 / 2) * VOXEL)  # (x − n_x / 2) · voxel size
    assert list(loop["rlnTomoName"]) == [r[0] for r in ROWS] and "rlnCoordinateX" not in loop
    csv = pd.read_csv(written["csv"])  # the CSV has both conventions
    np.testing.assert_allclose(csv[CENTRED[0]], loop[CENTRED[0]])
    np.testing.assert_allclose(csv["x"], df["x"])
    relion5 = read_picks(written["star"])  # finds tomograms.star next to it
    np.testing.assert_allclose(relion5.df[["x", "y", "z"]].to_numpy(float), df[["x", "y", "z"]].to_numpy(float))
    again = write_star_and_csv(relion5, second, "predictions", "relion3")
    back = read_particle_table(again["star"], check_files=False)
    np.testing.assert_allclose(back.df[["x", "y", "z"]].to_numpy(float), df[["x", "y", "z"]].to_numpy(float))
    assert not ({"rlnTomoName", *CENTRED} & set(back.df.columns))


def test_the_writer_filters_every_output_alike(predictions, tmp_path) -> None:
    df, folder = predictions
    table = _table(df, folder)
    writer = ParticlePredictionsWriter(tmp_path / "out", table, CLASSES, min_probability=0.7, split_by_class=True,
                                       coordinates="relion3")
    probabilities = np.full((len(ROWS), 3), 0.0, np.float32)
    for i, row in enumerate(ROWS):  # the predicted class gets the row's probability, the rest share what is left
        probabilities[i] = (1 - row[5]) / 2
        probabilities[i, CLASSES.index(row[4])] = row[5]
    writer.rows, writer.probabilities = np.arange(len(ROWS)), probabilities
    writer.features = np.arange(len(ROWS) * 2, dtype=np.float32).reshape(len(ROWS), 2)
    written = writer.write()
    kept = [i for i, r in enumerate(ROWS) if r[5] >= 0.7]
    assert len(starfile.read(written["star"], always_dict=True)["particles"]) == len(kept)
    assert len(pd.read_csv(written["csv"])) == len(kept)
    np.testing.assert_array_equal(np.load(written["embeddings"]), writer.features[kept])  # row i = row i of the CSV
    assert sum(len(starfile.read(written[f"star:{c}"], always_dict=True)["particles"]) for c in CLASSES) == len(kept)


def test_the_bundle_keys_reach_the_writer(predictions, tmp_path) -> None:
    from monai.bundle import ConfigParser

    df, folder = predictions
    picks = folder / "picks.csv"
    df.drop(columns=[MAX_PROBABILITY]).to_csv(picks, index=False)
    configs = Path(__file__).resolve().parents[1] / "bundles" / "cryo_ssl" / "configs"
    parser = ConfigParser()
    parser.read_config([str(configs / "common.json"), str(configs / "inference.json")])
    parser.update({"infer_table": str(picks), "class_names": CLASSES, "output_dir": str(tmp_path / "out"),
                   "infer_min_probability": 0.8, "infer_split_by_class": True, "infer_coordinates": "relion3"})
    writer = parser.get_parsed_content("writer")
    assert (writer.min_probability, writer.split_by_class, writer.coordinates) == (0.8, True, "relion3")
    default = ConfigParser()
    default.read_config([str(configs / "common.json"), str(configs / "inference.json")])
    assert (default["infer_min_probability"], default["infer_split_by_class"], default["infer_coordinates"]) == (
        0.0, False, "auto")


@pytest.mark.parametrize("given, expected", [(True, True), ("false", False), ("True", True), ("0", False)])
def test_split_by_class_takes_command_line_words(predictions, given, expected) -> None:
    writer = ParticlePredictionsWriter(predictions[1], _table(*predictions), CLASSES, split_by_class=given)
    assert writer.split_by_class is expected
    with pytest.raises(ConfigError, match="split_by_class: 'maybe' is not true or false"):
        ParticlePredictionsWriter(predictions[1], _table(*predictions), CLASSES, split_by_class="maybe")
    with pytest.raises(ConfigError, match="coordinates: unknown convention 'relion4'"):
        ParticlePredictionsWriter(predictions[1], _table(*predictions), CLASSES, coordinates="relion4")


def test_a_failed_write_leaves_the_previous_set(predictions, tmp_path, monkeypatch) -> None:
    """The set is written before any file is replaced: a write that fails on the last file keeps all old ones."""
    import cryomonai.io.atomic as atomic

    out = tmp_path / "out"
    out.mkdir()
    first = write_star_and_csv(_table(*predictions), out, "predictions", split_by_class=True)
    before = {p: p.read_bytes() for p in first.values()}
    real, calls = atomic.atomic_write, []

    def failing(path, *args, **kwargs):  # the last file of the set runs out of space
        calls.append(path)
        if len(calls) == len(before):
            raise CryoDataError(path, "ran out of space while writing", "free space")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(atomic, "atomic_write", failing)
    with pytest.raises(CryoDataError, match="ran out of space"):
        write_star_and_csv(filter_predictions(_table(*predictions), 0.9), out, "predictions", "relion3", True)
    assert {p: p.read_bytes() for p in first.values()} == before
    assert not list(out.glob(".*.tmp"))
