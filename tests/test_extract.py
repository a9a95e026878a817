"""Extraction of subtomograms from tomograms at picks (cryomonai.data.extract / .picks).

A noise-free synthetic tomogram with band-pass-only imaging is the sum of the placed templates, so
the box at a pick must match the particle's template at its recorded pose, centred at ``box // 2``.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import starfile
import torch

from cryomonai.data.extract import (
    PickExtractor,
    extract_subtomograms,
    fourier_resize,
    locate_picks,
    read_picks,
)
from cryomonai.errors import ConfigError, CryoDataError
from cryomonai.io import read_mrc, read_particle_table, write_particle_table
from cryomonai.simulate.geometry import matrix_from_euler_zyz
from cryomonai.simulate.subtomogram import place_templates
from cryomonai.simulate.templates import load_templates
from cryomonai.simulate.tomogram import simulate_tomogram

CLASSES = ("1bxn", "3j9i", "1s3x")
SHAPE = (40, 96, 96)
BOX = 24


@pytest.fixture(scope="module")
def tomo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Noise-free tomogram (z, y, x) = (40, 96, 96), 12 particles of 3 classes; returns its picks STAR."""
    plain = dict(apply_ctf=False, tilt_range=None)  # band-pass only: the tomogram is the sum of the templates
    root = tmp_path_factory.mktemp("tomo")
    return simulate_tomogram(root / "t", SHAPE, n_particles=12, snr=math.inf, classes=CLASSES, box=BOX, imaging=plain)


def _gaussian(n: int, centre: float, sigma: float) -> np.ndarray:
    g = np.exp(-0.5 * ((np.arange(n) - centre) / sigma) ** 2)
    return g[:, None, None] * g[None, :, None] * g[None, None, :]


# ---- Fourier resizing ------------------------------------------------------------------------------


@pytest.mark.parametrize("n_in,n_out", [(32, 16), (16, 32), (24, 17)])
def test_fourier_resize_resamples_a_smooth_blob_on_the_new_grid(n_in: int, n_out: int) -> None:
    """A Gaussian at voxel n/2 (σ = 3 input voxels) becomes the Gaussian sampled on the new grid."""
    ratio = n_in / n_out
    out = fourier_resize(_gaussian(n_in, n_in // 2, 3.0).astype(np.float32), (n_out,) * 3)
    expected = _gaussian(n_out, n_out // 2, 3.0 / ratio)
    assert out.shape == (n_out,) * 3 and out.dtype == np.float32
    assert np.abs(out - expected).max() < 0.01  # peak 1
    assert np.unravel_index(out.argmax(), out.shape) == (n_out // 2,) * 3


def test_fourier_resize_keeps_the_mean_and_follows_tensors() -> None:
    vol = torch.randn(2, 16, 16, 16, generator=torch.Generator().manual_seed(0)) + 3.0
    out = fourier_resize(vol, (8, 8, 8))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 8, 8, 8) and out.dtype == torch.float32
    torch.testing.assert_close(out.mean(dim=(1, 2, 3)), vol.mean(dim=(1, 2, 3)), atol=1e-5, rtol=0)
    assert fourier_resize(vol, (16, 16, 16)) is vol


# ---- extraction at the picks -----------------------------------------------------------------------


def _template_at_pose(template: np.ndarray, row: pd.Series) -> np.ndarray:
    canvas = torch.zeros((BOX,) * 3)
    angles = np.array([[row["rlnAngleRot"], row["rlnAngleTilt"], row["rlnAnglePsi"]]])
    place_templates(canvas, torch.from_numpy(template)[None], np.array([[BOX // 2] * 3]), matrix_from_euler_zyz(angles))
    return canvas.numpy()


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def test_extraction_at_the_picks_gives_back_the_particles(tomo: Path, tmp_path: Path) -> None:
    result = extract_subtomograms(tomo, tmp_path / "ext", box=BOX, edge="pad", normalise=False, progress=False)
    table = read_particle_table(result.table)
    picks = read_particle_table(tomo)
    assert result.n_extracted == len(table) == len(picks) and len(result.rejected) == 0
    templates = load_templates(list(CLASSES))
    tomogram = read_mrc(tomo.parent / "tomogram.mrc")[0]
    for _, row in table.df.iterrows():
        vol, voxel = read_mrc(row["path"])
        assert vol.shape == (BOX,) * 3 and voxel == pytest.approx(10.0)
        z, y, x = int(row["z"]), int(row["y"]), int(row["x"])
        inside = tomogram[max(z - 12, 0) : z + 12, max(y - 12, 0) : y + 12, max(x - 12, 0) : x + 12]
        if inside.shape == (BOX,) * 3:  # fully inside: exactly the tomogram's voxels
            np.testing.assert_array_equal(vol, inside)
        scores = {c: _corr(_template_at_pose(templates[c], row), vol) for c in CLASSES}
        assert max(scores, key=scores.get) == row["label"]  # the right particle, at the recorded pose
        truth = _template_at_pose(templates[row["label"]], row)
        shifted = [_corr(np.roll(truth, s, axis=a), vol) for a in range(3) for s in (-1, 1)]
        assert scores[row["label"]] > max(shifted)  # centred at box // 2, not one voxel off
    mean_corr = np.mean([_corr(_template_at_pose(templates[r["label"]], r), read_mrc(r["path"])[0])
                         for _, r in table.df.iterrows()])
    assert mean_corr > 0.7


def test_extracted_table_is_a_star_file_with_the_pick_columns(tomo: Path, tmp_path: Path) -> None:
    result = extract_subtomograms(tomo, tmp_path / "ext", box=BOX, edge="pad", progress=False)
    raw = starfile.read(result.table, always_dict=True)
    particles = raw["particles"]
    expected = {"rlnImageName", "rlnClassNumber", "rlnMicrographName", "rlnCoordinateX", "rlnCoordinateY",
                "rlnCoordinateZ", "rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi", "rlnPixelSize"}
    assert expected <= set(particles.columns)
    assert list(raw["classes"]["cryoClassName"]) == list(CLASSES)
    tomograms = {(result.table.parent / t).resolve() for t in particles["rlnMicrographName"]}
    assert tomograms == {(tomo.parent / "tomogram.mrc").resolve()}  # relative to the new table's folder
    assert not Path(particles["rlnMicrographName"].iloc[0]).is_absolute()
    assert particles["rlnImageName"].iloc[0] == "subtomograms/000001.mrc"  # 1-based pick row
    vol = read_mrc(result.table.parent / particles["rlnImageName"].iloc[0])[0]
    assert abs(vol.mean()) < 1e-5 and vol.std() == pytest.approx(1.0, abs=1e-4)  # normalised
    assert (result.table.parent / "particles.csv").is_file()
    with pytest.raises(ConfigError, match="already holds particles.star"):
        extract_subtomograms(tomo, tmp_path / "ext", box=BOX, progress=False)


def test_rescaling_bins_by_fourier_cropping(tomo: Path, tmp_path: Path) -> None:
    full = extract_subtomograms(tomo, tmp_path / "full", box=BOX, edge="pad", normalise=False, progress=False)
    binned = extract_subtomograms(tomo, tmp_path / "bin2", box=12, voxel_size=20.0, edge="pad", normalise=False,
                                  progress=False)
    assert binned.voxel_size == pytest.approx(20.0)
    a, b = read_particle_table(full.table).df, read_particle_table(binned.table).df
    assert (b["rlnPixelSize"] == 20.0).all()
    for pa, pb in zip(a["path"][:4], b["path"][:4]):
        vol, voxel = read_mrc(pb)
        assert vol.shape == (12, 12, 12) and voxel == pytest.approx(20.0)
        np.testing.assert_allclose(vol, fourier_resize(read_mrc(pa)[0], (12, 12, 12)), atol=1e-5)


def test_the_tomogram_is_memory_mapped_not_read(tomo: Path) -> None:
    extractor = PickExtractor(BOX)
    assert isinstance(extractor.tomogram(str(tomo.parent / "tomogram.mrc")), np.memmap)
    assert extractor.__getstate__()["_tomograms"] == {}  # workers reopen their own mapping


# ---- picks at the edge and outside -----------------------------------------------------------------


def _with_bad_picks(tomo: Path, folder: Path) -> Path:
    """The picks plus one whose box crosses the edge (row 13) and one outside the tomogram (row 14)."""
    df = read_particle_table(tomo).df.drop(columns="path")
    extra = df.iloc[:2].copy()
    extra[["x", "y", "z"]] = [[5, 48, 20], [150, 48, 20]]  # x = 5: box crosses x = 0; x = 150 > 96
    df = pd.concat([df, extra], ignore_index=True)
    df["tomogram"] = str(tomo.parent / "tomogram.mrc")
    folder.mkdir()
    return write_particle_table(df, folder / "picks.star", list(CLASSES))


def test_edge_report_leaves_picks_out_but_lists_every_one(tomo: Path, tmp_path: Path, caplog) -> None:
    picks = _with_bad_picks(tomo, tmp_path / "p")
    located = locate_picks(read_picks(picks), BOX)
    n_edge = int((located["status"] == "edge").sum())
    assert located["status"].iloc[-2:].tolist() == ["edge", "outside"] and n_edge >= 1
    with caplog.at_level(logging.WARNING, logger="cryomonai.data.extract"):
        result = extract_subtomograms(picks, tmp_path / "ext", box=BOX, progress=False)
    rejected = pd.read_csv(tmp_path / "ext" / "rejected_picks.csv")
    assert len(rejected) == len(result.rejected) == n_edge + 1 and result.n_extracted == 14 - n_edge - 1
    assert rejected.set_index("row").loc[14, "reason"] == "centre outside the tomogram"
    assert rejected.set_index("row").loc[13, "reason"] == "box crosses the tomogram edge"
    assert rejected.set_index("row").loc[14, "x"] == 150
    kept = read_particle_table(result.table).df
    assert len(kept) + len(rejected) == 14 and not set(kept["x"]) & {150}
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert f"{n_edge + 1} of 14 picks rejected" in warning.getMessage()


def test_edge_pad_fills_with_the_tomogram_mean_and_still_rejects_outside(tomo: Path, tmp_path: Path) -> None:
    picks = _with_bad_picks(tomo, tmp_path / "p")
    result = extract_subtomograms(picks, tmp_path / "ext", box=BOX, edge="pad", normalise=False, progress=False)
    assert result.rejected["row"].tolist() == [14] and result.n_extracted == 13
    vol = read_mrc(tmp_path / "ext" / "subtomograms" / "000013.mrc")[0]
    tomogram = read_mrc(tomo.parent / "tomogram.mrc")[0]
    # x = 5: box x-range [-7, 17): the first 7 x-columns are padding with the tomogram's mean
    np.testing.assert_allclose(vol[:, :, :7], tomogram.mean(), rtol=1e-4)
    np.testing.assert_array_equal(vol[:, :, 7:], tomogram[8:32, 36:60, 0:17])


def test_edge_error_names_the_row(tomo: Path, tmp_path: Path) -> None:
    picks = _with_bad_picks(tomo, tmp_path / "p")
    df = read_particle_table(picks).df
    first_bad = int(np.argmax((locate_picks(read_picks(picks), BOX)["status"] != "ok").to_numpy())) + 1
    with pytest.raises(CryoDataError, match=rf"picks.star, row {first_bad}: pick at x,y,z = .*— fix: use --edge pad"):
        extract_subtomograms(picks, tmp_path / "ext", box=BOX, edge="error", progress=False)
    assert len(df) == 14
    with pytest.raises(ConfigError, match="unknown edge policy"):
        extract_subtomograms(picks, tmp_path / "ext2", box=BOX, edge="crop", progress=False)


# ---- reading picks ---------------------------------------------------------------------------------


def test_text_coordinates_need_and_take_a_tomogram(tomo: Path, tmp_path: Path) -> None:
    xyz = read_particle_table(tomo).df[["x", "y", "z"]].to_numpy()
    text = tmp_path / "picks.txt"
    np.savetxt(text, np.column_stack([np.ones(len(xyz)), np.arange(len(xyz)), xyz]), fmt="%g")  # obj contour x y z
    with pytest.raises(ConfigError, match="does not name its tomogram"):
        read_picks(text)
    table = read_picks(text, tomogram=tomo.parent / "tomogram.mrc")
    np.testing.assert_array_equal(table.df[["x", "y", "z"]].to_numpy(), xyz)
    assert table.df["tomogram"].iloc[0] == str((tomo.parent / "tomogram.mrc").resolve())
    result = extract_subtomograms(text, tmp_path / "ext", box=BOX, edge="pad", tomogram=tomo.parent / "tomogram.mrc",
                                  progress=False)
    assert result.n_extracted == len(xyz)


def test_missing_tomogram_is_one_line_naming_the_row(tomo: Path, tmp_path: Path) -> None:
    df = read_particle_table(tomo).df.drop(columns="path").assign(tomogram="nowhere.mrc")
    picks = write_particle_table(df, tmp_path / "picks.star", list(CLASSES))
    with pytest.raises(CryoDataError, match=r"picks.star, row 1: tomogram .*nowhere.mrc: file not found"):
        extract_subtomograms(picks, tmp_path / "ext", box=BOX, progress=False)


def test_a_broken_tomogram_keeps_its_own_fix_and_leaves_nothing(tomo: Path, tmp_path: Path) -> None:
    """A truncated tomogram is named with the fix for a truncated file (not "paths are relative …"), and no
    output folder is left behind."""
    cut = tmp_path / "cut.mrc"
    cut.write_bytes((tomo.parent / "tomogram.mrc").read_bytes()[:5000])
    df = read_particle_table(tomo).df.drop(columns="path").assign(tomogram=str(cut))
    picks = write_particle_table(df, tmp_path / "picks.star", list(CLASSES))
    with pytest.raises(CryoDataError, match=r"row 1: tomogram .*cut.mrc: file is truncated.*— fix: copy or re-extract"):
        extract_subtomograms(picks, tmp_path / "ext", box=BOX, progress=False)
    assert not (tmp_path / "ext").exists()


def test_voxel_sizes_must_be_positive_and_known(tomo: Path, tmp_path: Path, caplog) -> None:
    """A negative size is refused (it was clamped to a 2-voxel source box); a header that leaves the voxel size
    unset (0) is an error where a size in Å must be converted, and a warning otherwise."""
    for key in ("voxel_size", "pick_voxel_size"):
        with pytest.raises(ConfigError, match=rf"{key}: -20 is not a voxel size"):
            extract_subtomograms(tomo, tmp_path / "neg", box=BOX, progress=False, **{key: -20})
    assert not (tmp_path / "neg").exists()
    import mrcfile

    unset = tmp_path / "unset.mrc"
    unset.write_bytes((tomo.parent / "tomogram.mrc").read_bytes())
    with mrcfile.open(unset, "r+") as mrc:
        mrc.voxel_size = 0
    df = read_particle_table(tomo).df.drop(columns="path").assign(tomogram=str(unset))
    picks = write_particle_table(df, tmp_path / "picks.star", list(CLASSES))
    with pytest.raises(CryoDataError, match=r"voxel size unset \(0\), so --voxel_size cannot be converted.*alterheader"):
        extract_subtomograms(picks, tmp_path / "ext", box=BOX, voxel_size=20, progress=False)
    with caplog.at_level("WARNING", logger="cryomonai"):
        result = extract_subtomograms(picks, tmp_path / "ext", box=BOX, edge="pad", progress=False)
    assert result.voxel_size == 1.0 and "unset" in caplog.text


def test_picks_all_outside_point_at_their_units(tomo: Path, tmp_path: Path) -> None:
    df = read_particle_table(tomo).df.drop(columns="path").assign(tomogram=str(tomo.parent / "tomogram.mrc"))
    df[["x", "y", "z"]] *= 10  # in Å, not voxels
    picks = write_particle_table(df, tmp_path / "picks.star", list(CLASSES))
    with pytest.raises(CryoDataError, match=r"no pick could be extracted.*— fix: every centre lies outside.*pick_voxel_size"):
        extract_subtomograms(picks, tmp_path / "ext", box=BOX, progress=False)


# ---- the on-the-fly dataset ------------------------------------------------------------------------


def test_pick_dataset_extracts_what_extraction_writes(tomo: Path, tmp_path: Path) -> None:
    from cryomonai.data.picks import PickDataset, particle_dataset

    picks = _with_bad_picks(tomo, tmp_path / "p")
    result = extract_subtomograms(picks, tmp_path / "ext", box=BOX, progress=False)
    ds = particle_dataset(picks, box=BOX, rejected_file=tmp_path / "rejected.csv")
    assert isinstance(ds, PickDataset) and len(ds) == result.n_extracted
    assert len(pd.read_csv(tmp_path / "rejected.csv")) == len(result.rejected)
    files = particle_dataset(result.table)  # a table of files: LoadImaged + MrcReader
    assert not isinstance(files, PickDataset) and len(files) == len(ds)
    for i in (0, len(ds) - 1):
        item, ref = ds[i], files[i]
        assert tuple(item["image"].shape) == (1, BOX, BOX, BOX) and item["image"].dtype == torch.float32
        assert item["name"] == ref["name"] and item["label"] == CLASSES.index(item["name"])
        assert float(item["image"].pixdim[0]) == pytest.approx(10.0)
        vol = item["image"][0].numpy()
        torch.testing.assert_close(torch.from_numpy((vol - vol.mean()) / vol.std()), ref["image"][0].as_tensor(),
                                   atol=1e-4, rtol=0)
    assert [d["index"] for d in ds.data] == sorted(set(range(14)) - set(ds.rejected["row"] - 1))
    with pytest.raises(ConfigError, match="no box is given"):
        particle_dataset(picks)
