"""pytom-match-pick particle lists (``tests/data/pytom``, its exact header) read as picks: the tomogram
from the job file or ``<tomo_id>.mrc``, voxel coordinates as written, the score column kept."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import starfile

from cryomonai.data.extract import extract_subtomograms, read_picks
from cryomonai.io import read_mrc, read_particle_table, write_mrc
from cryomonai.io.predictions import write_star_and_csv

FIXTURE = Path(__file__).parent / "data" / "pytom" / "tomo_01_particles.star"
HEADER = ["rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ", "rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi",
          "rlnLCCmax", "rlnCutOff", "rlnSearchStd", "rlnDetectorPixelSize", "rlnMicrographName"]
XYZ = [(52, 40, 21), (17, 66, 30), (71, 12, 9), (30, 30, 15)]  # the fixture's voxels
SCORES = [0.412, 0.358, 0.297, 0.241]


@pytest.fixture()
def pytom_job(tmp_path: Path) -> Path:
    """pytom's output folder: the particle list and the job file naming the tomogram (elsewhere)."""
    tomograms, job = tmp_path / "tomograms", tmp_path / "tm_job"
    tomograms.mkdir(), job.mkdir()
    volume = np.zeros((40, 70, 80), np.float32)  # (z, y, x)
    for x, y, z in XYZ:
        volume[z, y, x] = 10.0
    write_mrc(tomograms / "tomo_01.mrc", volume, voxel_size=13.79)
    shutil.copy(FIXTURE, job / FIXTURE.name)
    (job / "tomo_01_job.json").write_text(json.dumps({"tomogram": str(tomograms / "tomo_01.mrc"), "voxel_size": 13.79}))
    return job / FIXTURE.name


def test_the_fixture_has_pytoms_header() -> None:
    blocks = starfile.read(FIXTURE, always_dict=True)
    assert list(blocks) == ["particles"] and list(blocks["particles"].columns) == HEADER


def test_a_pytom_list_reads_as_picks_with_its_tomogram_voxels_and_score(pytom_job: Path) -> None:
    table = read_particle_table(pytom_job)
    assert table.df["path"].isna().all()  # a coordinate table
    assert set(table.df["tomogram"]) == {str((pytom_job.parents[1] / "tomograms" / "tomo_01.mrc").resolve())}
    np.testing.assert_array_equal(table.df[["x", "y", "z"]].to_numpy(), np.array(XYZ, float))
    assert table.df["rlnLCCmax"].tolist() == SCORES
    for column in ("rlnAngleRot", "rlnCutOff", "rlnSearchStd", "rlnDetectorPixelSize"):
        assert column in table.df, column
    assert table.class_names == [] and table.df["label"].isna().all()


def test_extraction_at_pytom_picks_centres_each_candidate(pytom_job: Path, tmp_path: Path) -> None:
    res = extract_subtomograms(read_picks(pytom_job), tmp_path / "out", box=8, edge="pad", normalise=False,
                               progress=False)
    assert res.n_extracted == len(XYZ)
    table = read_particle_table(res.table)
    assert table.df["rlnLCCmax"].tolist() == SCORES  # the score travels with the particle
    for path in table.df["path"]:
        vol, _ = read_mrc(path)
        assert np.unravel_index(int(np.argmax(vol)), vol.shape) == (4, 4, 4)


@pytest.mark.parametrize("layout", ["mrc_next_to_it", "legacy_data_block", "early_ptm_columns", "unresolved"])
def test_other_pytom_layouts(pytom_job: Path, tmp_path: Path, layout: str) -> None:
    (pytom_job.parent / "tomo_01_job.json").unlink()
    if layout == "mrc_next_to_it":
        shutil.move(pytom_job.parents[1] / "tomograms" / "tomo_01.mrc", pytom_job.parent / "tomo_01.mrc")
    elif layout == "legacy_data_block":  # before 0.7 pytom wrote the loop as a bare ``data_``
        pytom_job.write_text(pytom_job.read_text().replace("data_particles", "data_"))
        shutil.move(pytom_job.parents[1] / "tomograms" / "tomo_01.mrc", pytom_job.parent / "tomo_01.mrc")
    elif layout == "early_ptm_columns":  # early versions: every column with the prefix ptm
        pytom_job.write_text(pytom_job.read_text().replace("data_particles", "data_").replace("_rln", "_ptm"))
        shutil.move(pytom_job.parents[1] / "tomograms" / "tomo_01.mrc", pytom_job.parent / "tomo_01.mrc")
    table = read_particle_table(pytom_job)
    assert table.df["rlnLCCmax"].tolist() == SCORES
    expected = "tomo_01" if layout == "unresolved" else str((pytom_job.parent / "tomo_01.mrc").resolve())
    assert set(table.df["tomogram"]) == {expected}
    np.testing.assert_array_equal(table.df[["x", "y", "z"]].to_numpy(), np.array(XYZ, float))
    if layout == "unresolved":  # --tomogram names it
        given = read_picks(pytom_job, tomogram=pytom_job.parents[1] / "tomograms" / "tomo_01.mrc")
        assert set(given.df["tomogram"]) == {str((pytom_job.parents[1] / "tomograms" / "tomo_01.mrc").resolve())}


def test_predictions_of_pytom_picks_keep_the_score(pytom_job: Path, tmp_path: Path) -> None:
    written = write_star_and_csv(read_picks(pytom_job), tmp_path, "predictions", "relion3")
    loop = starfile.read(written["star"], always_dict=True)["particles"]
    assert loop["rlnLCCmax"].tolist() == SCORES and loop["rlnCoordinateX"].tolist() == [v[0] for v in XYZ]
