"""RELION-5 particles (centred Å coordinates + tomograms.star) → picks in voxels, extraction at them,
and predictions written back in the same convention; round trips checked with ``starfile`` against
hand-computed coordinates."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import starfile

from cryomonai.data.extract import extract_subtomograms, read_picks
from cryomonai.errors import ConfigError, CryoDataError
from cryomonai.io import read_mrc, write_mrc
from cryomonai.io.predictions import write_star_and_csv

PIXEL, BINNING = 2.5, 4.0  # Å per unbinned tilt-series pixel; the reconstruction is binned 4× → 10 Å voxels
SIZES = {"TS_01": (400, 320, 160), "TS_02": (360, 360, 120)}  # rlnTomoSizeX/Y/Z, unbinned pixels
# (tomogram, X, Y, Z in Å from the centre, class) and the hand-computed voxel (x, y, z) = Å / 10 + n / 2
PARTICLES = [
    ("TS_01", 0.0, 0.0, 0.0, 1, (50.0, 40.0, 20.0)),
    ("TS_01", 150.0, -200.0, 40.0, 2, (65.0, 20.0, 24.0)),
    ("TS_02", -305.0, 120.0, -75.0, 1, (14.5, 57.0, 7.5)),
]


@pytest.fixture()
def project(tmp_path) -> Path:
    """A RELION-5 project: tomograms/ (binned reconstructions with a bright voxel at each particle),
    tomograms.star and Refine3D/job001/run_data.star (paths relative to the project, as RELION writes)."""
    (tmp_path / "tomograms").mkdir()
    for name, (sx, sy, sz) in SIZES.items():
        shape = (int(sz / BINNING), int(sy / BINNING), int(sx / BINNING))  # (z, y, x)
        vol = np.zeros(shape, np.float32)
        for tomo, *_, voxel in PARTICLES:
            if tomo == name:
                x, y, z = (int(round(v)) for v in voxel)  # the extractor rounds to the nearest voxel
                vol[z, y, x] = 10.0
        write_mrc(tmp_path / "tomograms" / f"{name}.mrc", vol, voxel_size=PIXEL * BINNING)
    tomos = pd.DataFrame({
        "rlnTomoName": list(SIZES), "rlnVoltage": [300.0] * 2, "rlnTomoTiltSeriesPixelSize": [PIXEL] * 2,
        "rlnTomoTomogramBinning": [BINNING] * 2, "rlnTomoSizeX": [s[0] for s in SIZES.values()],
        "rlnTomoSizeY": [s[1] for s in SIZES.values()], "rlnTomoSizeZ": [s[2] for s in SIZES.values()],
        "rlnTomoReconstructedTomogram": [f"tomograms/{n}.mrc" for n in SIZES],
    })
    starfile.write({"global": tomos}, tmp_path / "tomograms.star")
    job = tmp_path / "Refine3D" / "job001"
    job.mkdir(parents=True)
    optics = pd.DataFrame({"rlnOpticsGroup": [1], "rlnOpticsGroupName": ["optics1"], "rlnTomoTiltSeriesPixelSize": [PIXEL],
                           "rlnTomoSubtomogramBinning": [2.0], "rlnImagePixelSize": [5.0], "rlnImageSize": [32]})
    parts = pd.DataFrame({
        "rlnTomoName": [p[0] for p in PARTICLES],
        "rlnCenteredCoordinateXAngst": [p[1] for p in PARTICLES],
        "rlnCenteredCoordinateYAngst": [p[2] for p in PARTICLES],
        "rlnCenteredCoordinateZAngst": [p[3] for p in PARTICLES],
        "rlnClassNumber": [p[4] for p in PARTICLES],
        "rlnAngleRot": [10.0, 20.0, 30.0],
        "rlnTomoParticleName": [f"{p[0]}/{i + 1}" for i, p in enumerate(PARTICLES)],
        "rlnOpticsGroup": [1, 1, 1],
    })
    starfile.write({"optics": optics, "particles": parts}, job / "run_data.star")
    return tmp_path


def test_centred_angstrom_become_hand_computed_voxels(project):
    picks = read_picks(project / "Refine3D" / "job001" / "run_data.star", tomograms_star=project / "tomograms.star")
    expected = np.array([p[5] for p in PARTICLES])
    np.testing.assert_allclose(picks.df[["x", "y", "z"]].to_numpy(float), expected, atol=1e-9)
    assert [Path(t) for t in picks.df["tomogram"]] == [project / "tomograms" / f"{p[0]}.mrc" for p in PARTICLES]
    assert list(picks.df["label"]) == ["1", "2", "1"]
    for column in ("rlnTomoName", "rlnCenteredCoordinateXAngst", "rlnAngleRot", "rlnTomoParticleName", "rlnOpticsGroup"):
        assert column in picks.df.columns, column  # every input column kept


def test_extraction_at_relion5_picks_centres_each_particle(project, tmp_path):
    picks = read_picks(project / "Refine3D" / "job001" / "run_data.star", tomograms_star=project / "tomograms.star")
    result = extract_subtomograms(picks, tmp_path / "out", box=8, edge="pad", normalise=False, progress=False)
    assert result.n_extracted == len(PARTICLES)
    table = starfile.read(tmp_path / "out" / "particles.star", always_dict=True)["particles"]
    for name in table["rlnImageName"]:
        vol, _ = read_mrc(tmp_path / "out" / name)
        assert np.unravel_index(int(np.argmax(vol)), vol.shape) == (4, 4, 4) and vol.max() == pytest.approx(10.0)


def test_predictions_go_back_in_relion5_convention(project, tmp_path):
    source = project / "Refine3D" / "job001" / "run_data.star"
    picks = read_picks(source, tomograms_star=project / "tomograms.star")
    written = write_star_and_csv(picks, tmp_path, "predictions")
    back = starfile.read(written["star"], always_dict=True)["particles"]
    original = starfile.read(source, always_dict=True)["particles"]
    for column in original.columns:  # every input column, unchanged
        assert column in back.columns, column
        if column != "rlnClassNumber":
            assert list(back[column]) == list(original[column]), column
    assert not {"rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ", "rlnMicrographName"} & set(back.columns)
    csv = pd.read_csv(written["csv"])
    np.testing.assert_allclose(csv[["x", "y", "z"]].to_numpy(float), np.array([p[5] for p in PARTICLES]))
    # and it reads back to the same voxels
    (tmp_path / "tomograms.star").write_text((project / "tomograms.star").read_text())
    again = read_picks(written["star"], tomograms_star=project / "tomograms.star")
    np.testing.assert_allclose(again.df[["x", "y", "z"]].to_numpy(float), picks.df[["x", "y", "z"]].to_numpy(float))


def test_tomograms_star_is_found_next_to_the_particles(project):
    (project / "Refine3D" / "job001" / "tomograms.star").write_text((project / "tomograms.star").read_text())
    picks = read_picks(project / "Refine3D" / "job001" / "run_data.star")
    assert len(picks) == len(PARTICLES)


@pytest.mark.parametrize("case", ["no_tomograms_star", "unknown_tomogram", "wrong_tomogram_size", "with_tomogram"])
def test_relion5_errors_are_one_line(project, case):
    star = project / "Refine3D" / "job001" / "run_data.star"
    kwargs = {"tomograms_star": project / "tomograms.star"}
    if case == "no_tomograms_star":
        kwargs = {}
    elif case == "unknown_tomogram":
        blocks = starfile.read(star, always_dict=True)
        blocks["particles"].loc[1, "rlnTomoName"] = "TS_99"
        starfile.write(blocks, star)
    elif case == "wrong_tomogram_size":
        write_mrc(project / "tomograms" / "TS_01.mrc", np.zeros((10, 10, 10), np.float32), voxel_size=10.0)
    elif case == "with_tomogram":
        kwargs["tomogram"] = project / "tomograms" / "TS_01.mrc"
    with pytest.raises(ConfigError if case == "with_tomogram" else CryoDataError) as err:  # --tomogram: an option
        read_picks(star, **kwargs)
    message = str(err.value)
    assert "\n" not in message and "— fix:" in message, message
    expected = {"no_tomograms_star": "tomograms STAR file not found", "unknown_tomogram": "row 2: tomogram 'TS_99'",
                "wrong_tomogram_size": "10x10x10 voxels", "with_tomogram": "names its tomograms"}[case]
    assert expected in message, message
