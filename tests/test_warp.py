"""WarpTools template-matching picks (fractions of the tomogram's size) read as picks: the tomogram from
``../reconstruction/``, voxels = fraction × size, the score kept; extraction centres each candidate; the
predictions go back in Warp's convention."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import starfile

from cryomonai.data.extract import extract_subtomograms, read_picks
from cryomonai.errors import CryoDataError
from cryomonai.io import ParticleTable, read_mrc, read_particle_table, write_mrc
from cryomonai.io.predictions import write_star_and_csv

SHAPE = (40, 70, 80)  # (z, y, x)
XYZ = [(52, 40, 21), (17, 66, 30), (71, 12, 9), (30, 30, 15)]  # voxels
SCORES = [9.4, 8.1, 7.7, 6.2]


def _matching_star(path: Path, xyz=XYZ, shape=SHAPE, series: str = "TS_01.tomostar") -> Path:
    """A WarpTools matching STAR file: coordinates as fractions of (nx, ny, nz)."""
    nz, ny, nx = shape
    loop = pd.DataFrame({"rlnCoordinateX": [x / nx for x, _, _ in xyz], "rlnCoordinateY": [y / ny for _, y, _ in xyz],
                         "rlnCoordinateZ": [z / nz for _, _, z in xyz], "rlnAngleRot": 0.0, "rlnAngleTilt": 0.0,
                         "rlnAnglePsi": 0.0, "rlnMicrographName": series, "rlnAutopickFigureOfMerit": SCORES[:len(xyz)]})
    path.parent.mkdir(parents=True, exist_ok=True)
    starfile.write({"particles": loop}, path)
    return path


def _tomogram(path: Path, xyz=XYZ, shape=SHAPE) -> Path:
    volume = np.zeros(shape, np.float32)
    for x, y, z in xyz:
        volume[z, y, x] = 10.0
    path.parent.mkdir(parents=True, exist_ok=True)
    write_mrc(path, volume, voxel_size=10.0)
    return path


@pytest.fixture()
def warp_folder(tmp_path: Path) -> Path:
    """WarpTools' tilt-series folder: reconstruction/ and matching/; returns the matching STAR file."""
    _tomogram(tmp_path / "warp_tiltseries" / "reconstruction" / "TS_01_10.00Apx.mrc")
    return _matching_star(tmp_path / "warp_tiltseries" / "matching" / "TS_01_10.00Apx_emd_15854_flipx.star")


def test_warp_matching_reads_as_picks_in_voxels_of_its_tomogram(warp_folder: Path) -> None:
    table = read_particle_table(warp_folder)
    assert table.df["path"].isna().all()  # a coordinate table
    tomogram = (warp_folder.parents[1] / "reconstruction" / "TS_01_10.00Apx.mrc").resolve()
    assert set(table.df["tomogram"]) == {str(tomogram)}
    np.testing.assert_allclose(table.df[["x", "y", "z"]].to_numpy(float), np.array(XYZ, float), atol=1e-3)  # STAR keeps 6 decimals
    assert table.df["rlnAutopickFigureOfMerit"].tolist() == SCORES
    assert set(table.df["warpTiltSeries"]) == {"TS_01.tomostar"}
    assert table.class_names == [] and table.df["label"].isna().all()


def test_extraction_at_warp_picks_centres_each_candidate(warp_folder: Path, tmp_path: Path) -> None:
    res = extract_subtomograms(read_picks(warp_folder), tmp_path / "out", box=8, edge="pad", normalise=False,
                               progress=False)
    assert res.n_extracted == len(XYZ)
    table = read_particle_table(res.table)
    assert table.df["rlnAutopickFigureOfMerit"].tolist() == SCORES  # the score travels with the particle
    for path in table.df["path"]:
        vol, _ = read_mrc(path)
        assert np.unravel_index(int(np.argmax(vol)), vol.shape) == (4, 4, 4)


def test_the_tomogram_is_the_longest_name_that_begins_the_star_files(tmp_path: Path) -> None:
    recon = tmp_path / "reconstruction"
    _tomogram(recon / "TS_1_10.00Apx.mrc", shape=(20, 20, 20), xyz=[(1, 1, 1)])
    _tomogram(recon / "TS_10_10.00Apx.mrc")
    _tomogram(recon / "TS_10.mrc", shape=(8, 8, 8), xyz=[(1, 1, 1)])  # a shorter name that also begins it
    star = _matching_star(tmp_path / "matching" / "TS_10_10.00Apx_emd_1_flipx.star", series="TS_10.tomostar")
    table = read_particle_table(star)
    assert set(table.df["tomogram"]) == {str((recon / "TS_10_10.00Apx.mrc").resolve())}
    np.testing.assert_allclose(table.df[["x", "y", "z"]].to_numpy(float), np.array(XYZ, float), atol=1e-3)  # STAR keeps 6 decimals
    # an empty override suffix: the STAR file is named exactly as the tomogram
    star = _matching_star(tmp_path / "matching" / "TS_10_10.00Apx.star", series="TS_10.tomostar")
    assert set(read_particle_table(star).df["tomogram"]) == {str((recon / "TS_10_10.00Apx.mrc").resolve())}
    # beside the STAR file, when there is no reconstruction/ folder
    alone = tmp_path / "alone"
    _tomogram(alone / "TS_01.mrc")
    star = _matching_star(alone / "TS_01_emd_1.star")
    assert set(read_particle_table(star).df["tomogram"]) == {str((alone / "TS_01.mrc").resolve())}


def test_without_its_tomogram_it_is_a_one_line_error(tmp_path: Path) -> None:
    star = _matching_star(tmp_path / "matching" / "TS_01_10.00Apx_emd_1.star")
    with pytest.raises(CryoDataError) as err:
        read_particle_table(star)
    text = str(err.value)
    assert str(star) in text and "fractions of their tomogram's size" in text and "\n" not in text


def test_picks_in_voxels_with_a_score_column_are_not_rescaled(tmp_path: Path) -> None:
    loop = pd.DataFrame({"rlnCoordinateX": [52.0], "rlnCoordinateY": [40.0], "rlnCoordinateZ": [21.0],
                         "rlnMicrographName": ["tomo.mrc"], "rlnAutopickFigureOfMerit": [5.0]})
    starfile.write({"particles": loop}, tmp_path / "picks.star")
    table = read_particle_table(tmp_path / "picks.star")
    assert table.df[["x", "y", "z"]].to_numpy(float).tolist() == [[52.0, 40.0, 21.0]]
    assert table.df["tomogram"].tolist() == ["tomo.mrc"]


def test_predictions_go_back_to_warp_in_its_own_convention(warp_folder: Path, tmp_path: Path) -> None:
    """coordinates="auto": the tilt series and the fractions as they came (for ts_export_particles
    --normalized_coords), per class too; the CSV keeps the voxels and the reconstruction; "relion3": voxels."""
    table = read_particle_table(warp_folder)
    table = ParticleTable(table.df.assign(label=["a", "b", "a", "b"], label_index=[0, 1, 0, 1]), ["a", "b"], table.source)
    fractions = starfile.read(warp_folder)[["rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ"]].to_numpy(float)
    (tmp_path / "pred").mkdir(), (tmp_path / "r3").mkdir()
    written = write_star_and_csv(table, tmp_path / "pred", "predictions", split_by_class=True)
    star = starfile.read(written["star"])["particles"]
    assert set(star["rlnMicrographName"]) == {"TS_01.tomostar"}
    np.testing.assert_allclose(star[["rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ"]].to_numpy(float), fractions)
    assert not {"warpTiltSeries", "warpCoordinateX"} & set(star.columns)
    assert star["rlnAutopickFigureOfMerit"].tolist() == SCORES
    per_class = starfile.read(written["star:a"])["particles"]
    np.testing.assert_allclose(per_class["rlnCoordinateX"].to_numpy(float), fractions[[0, 2], 0])
    csv = pd.read_csv(written["csv"])
    np.testing.assert_allclose(csv[["x", "y", "z"]].to_numpy(float), np.array(XYZ, float), atol=1e-3)
    assert (tmp_path / "pred" / csv["tomogram"].iloc[0]).resolve() == (warp_folder.parents[1] / "reconstruction"
                                                                        / "TS_01_10.00Apx.mrc").resolve()
    relion3 = starfile.read(write_star_and_csv(table, tmp_path / "r3", "predictions", coordinates="relion3")["star"])["particles"]
    np.testing.assert_allclose(relion3[["rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ"]].to_numpy(float),
                               np.array(XYZ, float), atol=1e-3)
    assert relion3["rlnMicrographName"].iloc[0].endswith("TS_01_10.00Apx.mrc")
