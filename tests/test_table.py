"""Tests for cryomonai.io.table: STAR/CSV particle tables, round trips and error messages."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cryomonai.errors import ConfigError, CryoDataError
from cryomonai.io import ParticleTable, read_particle_table, write_mrc, write_particle_table


@pytest.fixture
def vols(tmp_path):
    """Four tiny subtomograms in tmp_path/vols/; returns their relative paths (from tmp_path)."""
    (tmp_path / "vols").mkdir()
    for i in range(4):
        write_mrc(tmp_path / "vols" / f"{i}.mrc", np.full((4, 4, 4), i, np.float32))
    return [f"vols/{i}.mrc" for i in range(4)]


@pytest.fixture
def table(tmp_path, vols):
    """A labelled CSV table with every optional column, an unlabelled row and extra columns."""
    df = pd.DataFrame({
        "path": vols,
        "label": ["ribosome", "proteasome", "ribosome", None],
        "split": ["train", "val", "Test", None],
        "tomogram": ["tomo 1", "tomo 1", "tomo_2", None],
        "x": [1.5, 2.0, 3.0, None],
        "y": [4.0, 5.0, 6.0, None],
        "z": [7.0, 8.0, 9.0, None],
        "rlnAngleRot": [10.0, 20.0, 30.0, 40.0],
        "score": ["a b", "c", "d", "e"],
    })
    df.to_csv(tmp_path / "particles.csv", index=False)
    return read_particle_table(tmp_path / "particles.csv", class_names=["ribosome", "proteasome"])


def _write_csv(target, **columns):
    pd.DataFrame(columns).to_csv(target, index=False)
    return target


def test_read_csv_normalises_columns(tmp_path, table):
    df = table.df
    assert list(df.columns[:8]) == ["path", "label", "label_index", "split", "tomogram", "x", "y", "z"]
    assert list(df.columns[8:]) == ["rlnAngleRot", "score"]
    assert df["path"].tolist() == [str(tmp_path / "vols" / f"{i}.mrc") for i in range(4)]
    assert df["label"].tolist() == ["ribosome", "proteasome", "ribosome", None]
    assert df["label_index"].tolist() == [0, 1, 0, -1]  # follows the imposed class order
    assert df["split"].tolist() == ["train", "val", "test", None]
    assert df["tomogram"].tolist() == ["tomo 1", "tomo 1", "tomo_2", None]
    assert df["x"].tolist()[:3] == [1.5, 2.0, 3.0] and np.isnan(df["x"][3])
    assert table.class_names == ["ribosome", "proteasome"] and table.source == tmp_path / "particles.csv"
    assert table.index_of("proteasome") == 1 and table.name_of(0) == "ribosome"
    with pytest.raises(CryoDataError, match="unknown class 'actin'"):
        table.index_of("actin")
    with pytest.raises(CryoDataError, match="no class with index 5"):
        table.name_of(5)
    assert len(table.subset(df["split"] == "train")) == 1


@pytest.mark.parametrize("first, second", [("star", "star"), ("csv", "csv"), ("star", "csv"), ("csv", "star")])
def test_round_trip(tmp_path, table, first, second):
    out = tmp_path / "out" / "deeper"
    out.mkdir(parents=True)
    write_particle_table(table, out / f"a.{first}")
    write_particle_table(read_particle_table(out / f"a.{first}"), out / f"b.{second}")
    back = read_particle_table(out / f"b.{second}")
    assert back.class_names == ["ribosome", "proteasome"]  # order kept, not re-sorted
    pd.testing.assert_frame_equal(back.df, table.df, check_dtype=False)
    assert "../../vols/0.mrc" in (out / f"b.{second}").read_text()  # relative to the output folder


def test_star_layout(tmp_path, table):
    path = write_particle_table(table, tmp_path / "t.star")
    import starfile

    blocks = starfile.read(path, always_dict=True)
    particles, classes = blocks["particles"], blocks["classes"]
    assert particles["rlnImageName"].tolist() == [f"vols/{i}.mrc" for i in range(4)]
    assert particles["rlnClassNumber"].tolist() == [1, 2, 1, 0]
    assert particles["rlnCoordinateX"].tolist()[:3] == [1.5, 2.0, 3.0]
    assert {"rlnMicrographName", "cryoSplit", "rlnAngleRot", "score"} <= set(particles.columns)
    assert classes["cryoClassName"].tolist() == ["ribosome", "proteasome"]


def test_star_without_classes_block_uses_numbers(tmp_path, vols):
    import starfile

    starfile.write(pd.DataFrame({"rlnImageName": vols[:3], "rlnClassNumber": [3, 1, 0]}), tmp_path / "t.star")
    table = read_particle_table(tmp_path / "t.star")
    assert table.class_names == ["1", "2", "3"]
    assert table.df["label"].tolist() == ["3", "1", None]
    assert table.df["label_index"].tolist() == [2, 0, -1]


def test_csv_integer_labels_are_names_sorted_numerically(tmp_path, vols):
    table = read_particle_table(_write_csv(tmp_path / "t.csv", path=vols[:3], label=[10, 2, 1]))
    assert table.class_names == ["1", "2", "10"]
    assert table.df["label_index"].tolist() == [2, 1, 0]


def test_unlabelled_table_without_label_column(tmp_path, vols):
    table = read_particle_table(_write_csv(tmp_path / "t.csv", path=vols))
    assert table.class_names == [] and (table.df["label_index"] == -1).all()
    with pytest.raises(CryoDataError, match=r"t\.csv, row 1: has no class \(4 unlabelled rows\)"):
        read_particle_table(tmp_path / "t.csv", require_labels=True)


def test_write_dataframe(tmp_path, vols):
    df = pd.DataFrame({"path": [str(tmp_path / v) for v in vols[:2]], "label": ["b", "a"]})
    back = read_particle_table(write_particle_table(df, tmp_path / "t.star"))
    assert back.class_names == ["a", "b"] and back.df["label_index"].tolist() == [1, 0]
    with pytest.raises(CryoDataError, match="class 'b' is not one of the classes"):
        write_particle_table(df, tmp_path / "u.csv", class_names=["a"])
    with pytest.raises(ConfigError, match="unknown table format '.txt'"):
        write_particle_table(df, tmp_path / "t.txt")


# ------------------------------------------------------------------ errors


def test_missing_table(tmp_path):
    with pytest.raises(CryoDataError, match=r"nope\.star: particle table not found"):
        read_particle_table(tmp_path / "nope.star")


def test_unknown_format(tmp_path):
    (tmp_path / "t.xlsx").write_text("x")
    with pytest.raises(CryoDataError, match="unknown table format"):
        read_particle_table(tmp_path / "t.xlsx")


@pytest.mark.parametrize("text", ["", "path,label\n"])
def test_empty_csv(tmp_path, text):
    (tmp_path / "t.csv").write_text(text)
    with pytest.raises(CryoDataError, match=r"t\.csv: the particle table (is empty|has no rows)"):
        read_particle_table(tmp_path / "t.csv")


def test_empty_star(tmp_path):
    (tmp_path / "t.star").write_text("data_particles\n\nloop_\n_rlnImageName #1\n")
    with pytest.raises(CryoDataError, match=r"t\.star: the particle table has no rows"):
        read_particle_table(tmp_path / "t.star")


def test_missing_required_column(tmp_path, vols):
    _write_csv(tmp_path / "t.csv", file=vols, label=["a"] * 4)
    with pytest.raises(CryoDataError, match=r"t\.csv: missing column 'path'.*expected columns path \(or tomogram"):
        read_particle_table(tmp_path / "t.csv")
    import starfile

    starfile.write(pd.DataFrame({"rlnMicrographName": ["t1"], "rlnClassNumber": [1]}), tmp_path / "t.star")
    with pytest.raises(CryoDataError, match=r"t\.star: missing column rlnImageName.*expected rlnImageName \(or"):
        read_particle_table(tmp_path / "t.star")
    # a coordinate table short of one column names that column, not the subtomogram table's
    starfile.write(pd.DataFrame({"rlnMicrographName": ["t1"], "rlnCoordinateX": [1.0], "rlnCoordinateY": [2.0]}),
                   tmp_path / "c.star")
    with pytest.raises(CryoDataError, match=r"c\.star: missing column rlnCoordinateZ; found"):
        read_particle_table(tmp_path / "c.star")
    pd.DataFrame({"tomogarm": ["t.mrc"], "x": [1], "y": [2], "z": [3]}).to_csv(tmp_path / "c.csv", index=False)
    with pytest.raises(CryoDataError, match=r"c\.csv: missing column 'tomogram'; found \['tomogarm'"):
        read_particle_table(tmp_path / "c.csv")


def test_missing_files_reports_first_and_count(tmp_path, vols):
    paths = [vols[0], "vols/gone.mrc", vols[1], "vols/lost.mrc"]
    _write_csv(tmp_path / "t.csv", path=paths, label=["a"] * 4)
    with pytest.raises(CryoDataError, match=r"t\.csv, row 2: file not found: .*gone\.mrc \(2 of 4 files missing\)"):
        read_particle_table(tmp_path / "t.csv")
    assert len(read_particle_table(tmp_path / "t.csv", check_files=False)) == 4


def test_unknown_class_with_imposed_class_names(tmp_path, vols):
    _write_csv(tmp_path / "t.csv", path=vols, label=["a", "b", "c", "c"])
    expected = r"t\.csv, row 3: class 'c' is not one of the classes \['b', 'a'\] \(2 of 4 rows\)"
    with pytest.raises(CryoDataError, match=expected):
        read_particle_table(tmp_path / "t.csv", class_names=["b", "a"])
    table = read_particle_table(tmp_path / "t.csv", class_names=["c", "b", "a", "d"])
    assert table.df["label_index"].tolist() == [2, 1, 0, 0]


def test_duplicate_rows(tmp_path, vols):
    _write_csv(tmp_path / "t.csv", path=[vols[0], vols[1], "./" + vols[0]], label=["a", "a", "a"])
    with pytest.raises(CryoDataError, match=r"t\.csv, row 3: .*0\.mrc is listed twice \(first at row 1"):
        read_particle_table(tmp_path / "t.csv")
    assert len(read_particle_table(tmp_path / "t.csv", allow_duplicates=True)) == 3


def test_bad_split_value(tmp_path, vols):
    _write_csv(tmp_path / "t.csv", path=vols[:2], label=["a", "a"], split=["train", "validation"])
    with pytest.raises(CryoDataError, match=r"t\.csv, row 2: split 'validation' is not one of"):
        read_particle_table(tmp_path / "t.csv")


def test_star_class_number_outside_classes_block(tmp_path, vols):
    import starfile

    blocks = {
        "particles": pd.DataFrame({"rlnImageName": vols[:2], "rlnClassNumber": [1, 3]}),
        "classes": pd.DataFrame({"rlnClassNumber": [1, 2], "cryoClassName": ["a", "b"]}),
    }
    starfile.write(blocks, tmp_path / "t.star")
    with pytest.raises(CryoDataError, match=r"t\.star, row 2: rlnClassNumber 3 is not a class 1\.\.2"):
        read_particle_table(tmp_path / "t.star")


def test_inconsistent_label_index_in_csv(tmp_path, vols):
    _write_csv(tmp_path / "t.csv", path=vols[:3], label=["a", "b", "a"], label_index=[0, 1, 1])
    with pytest.raises(CryoDataError, match=r"t\.csv, row 3: label_index 1 disagrees with label 'a'"):
        read_particle_table(tmp_path / "t.csv")


@pytest.mark.parametrize("suffix", ["star", "csv"])
def test_coordinate_table_without_paths_round_trips(tmp_path, suffix):
    df = pd.DataFrame({
        "tomogram": "/data/tomo.mrc", "label": ["b", "a"], "x": [1.0, 2.0], "y": [3.0, 4.0], "z": [5.0, 6.0],
        "rlnAngleRot": [10.0, 20.0], "rlnPixelSize": 10.0,
    })
    path = write_particle_table(df, tmp_path / f"picks.{suffix}", class_names=["a", "b"])
    assert "mrc" not in path.read_text().replace("tomo.mrc", "")  # no subtomogram path column
    table = read_particle_table(path)
    assert table.df["path"].tolist() == [None, None] and table.df["label_index"].tolist() == [1, 0]
    assert table.df["z"].tolist() == [5.0, 6.0] and table.df["rlnPixelSize"].tolist() == [10.0, 10.0]
    assert table.df["tomogram"].tolist() == ["/data/tomo.mrc"] * 2
    _write_csv(tmp_path / "bad.csv", tomogram=["t", "t"], x=[1, None], y=[1, 1], z=[1, 1])
    with pytest.raises(CryoDataError, match=r"bad\.csv, row 2: a table without paths needs tomogram, x, y and z"):
        read_particle_table(tmp_path / "bad.csv")


def test_particle_table_is_a_plain_dataclass(tmp_path):
    table = ParticleTable(pd.DataFrame({"path": []}), ["a"])
    assert len(table) == 0 and table.source is None
