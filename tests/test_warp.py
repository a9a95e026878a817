"""WarpTools template-matching picks (fractions of the tomogram's size) read as picks: the tomogram from
``../reconstruction/``, voxels = fraction × size, the score kept; extraction centres each candidate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import starfile

from cryomonai.data.extract import extract_subtomograms, read_picks
from cryomonai.errors import CryoDataError
from cryomonai.io import read_mrc, read_particle_table, write_mrc

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
