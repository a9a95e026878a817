"""OME-Zarr tomograms (the CZ cryo-ET data portal's and copick's format) work wherever an MRC tomogram does.

The same synthetic tomogram is written as MRC and as OME-Zarr with the reference writer
(``ome_zarr.writer.write_multiscale``, a 2-level pyramid): extraction and the inference pick dataset
must give the same boxes from both; asking for twice the voxel size reads the coarser level; bad
stores get one-line errors; a sparse OME-Zarr tomogram far larger than the memory is read box by box.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import zarr
from ome_zarr.writer import write_multiscale

from cryomonai.data.extract import extract_subtomograms, fourier_resize, locate_picks, read_picks
from cryomonai.data.picks import particle_dataset
from cryomonai.errors import ConfigError, CryoDataError
from cryomonai.io import choose_level, is_ome_zarr, open_tomogram, read_mrc, tomogram_levels
from cryomonai.io.table import write_particle_table
from cryomonai.simulate.tomogram import simulate_tomogram

CLASSES = ("1bxn", "3j9i", "1s3x")
SHAPE = (40, 96, 96)
BOX = 16


def _axes(unit: str = "angstrom", channel: bool = False) -> list[dict]:
    space = [{"name": a, "type": "space", "unit": unit} for a in "zyx"]
    return ([{"name": "c", "type": "channel"}] if channel else []) + space


def write_ome_zarr(path: Path, volume: np.ndarray, voxel: float, levels: int = 2, unit: str = "angstrom",
                   channel: bool = False) -> Path:
    """``volume`` (z, y, x) as an OME-Zarr image: level i is 2^i-binned (mean), scale voxel · 2^i."""
    pyramid, scales = [volume.astype(np.float32)], [voxel]
    for _ in range(1, levels):
        v = pyramid[-1]
        v = v[: v.shape[0] // 2 * 2, : v.shape[1] // 2 * 2, : v.shape[2] // 2 * 2]
        pyramid.append(v.reshape(v.shape[0] // 2, 2, v.shape[1] // 2, 2, v.shape[2] // 2, 2).mean((1, 3, 5)))
        scales.append(scales[-1] * 2)
    if channel:
        pyramid = [p[None] for p in pyramid]
    lead = [1.0] if channel else []
    write_multiscale(pyramid, zarr.open_group(str(path), mode="w"), axes=_axes(unit, channel),
                     coordinate_transformations=[[{"type": "scale", "scale": lead + [s] * 3}] for s in scales],
                     storage_options={"chunks": (1,) * len(lead) + (16, 32, 32)})
    return path


@pytest.fixture(scope="module")
def tomo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(picks STAR of the MRC tomogram, the MRC tomogram, the same tomogram as OME-Zarr); 10 Å voxels."""
    root = tmp_path_factory.mktemp("omezarr")
    star = simulate_tomogram(root / "t", SHAPE, n_particles=10, snr=math.inf, classes=CLASSES, box=24,
                             imaging=dict(apply_ctf=False, tilt_range=None))
    mrc = star.parent / "tomogram.mrc"
    volume, voxel = read_mrc(mrc)
    return star, mrc, write_ome_zarr(root / "tomogram.zarr", volume, voxel)


def _zarr_picks(star: Path, store: Path, out: Path) -> Path:
    """The picks table of ``star`` pointing at ``store`` instead of the MRC file."""
    table = read_picks(star)
    df = table.df.assign(tomogram=str(store)).drop(columns=[c for c in ("path",) if c in table.df])
    return write_particle_table(type(table)(df, table.class_names), out)


def test_levels_voxel_sizes_and_the_level_chosen(tomo) -> None:
    _, mrc, store = tomo
    assert is_ome_zarr(store) and not is_ome_zarr(mrc)
    levels = tomogram_levels(store)
    names = [lv.level for lv in levels]  # the writer's level paths: "0", "1" (ome-zarr < 0.12) or "s0", "s1"
    assert names in (["0", "1"], ["s0", "s1"])
    assert [(lv.shape, lv.voxel_size) for lv in levels] == [(SHAPE, 10.0), ((20, 48, 48), 20.0)]
    assert choose_level(levels, None).level == names[0]
    assert choose_level(levels, 15.0).level == names[0]  # never read coarser than asked
    assert choose_level(levels, 20.0).level == names[1] and choose_level(levels, 35.0).level == names[1]
    assert choose_level(levels, 5.0).level == names[0]  # finer than any level: the finest, Fourier-padded
    box = open_tomogram(store, names[0])[3:7, 10:20, 30:33]
    np.testing.assert_array_equal(box, read_mrc(mrc)[0][3:7, 10:20, 30:33])


def test_extraction_from_ome_zarr_equals_extraction_from_mrc(tomo, tmp_path) -> None:
    star, _, store = tomo
    from_mrc = extract_subtomograms(star, tmp_path / "mrc", box=BOX, progress=False)
    from_zarr = extract_subtomograms(_zarr_picks(star, store, tmp_path / "zarr_picks.star"), tmp_path / "zarr",
                                     box=BOX, progress=False)
    assert from_zarr.n_extracted == from_mrc.n_extracted > 0 and from_zarr.voxel_size == from_mrc.voxel_size == 10.0
    for a, b in zip(sorted((tmp_path / "mrc" / "subtomograms").glob("*.mrc")),
                    sorted((tmp_path / "zarr" / "subtomograms").glob("*.mrc"))):
        assert a.name == b.name
        np.testing.assert_allclose(read_mrc(a)[0], read_mrc(b)[0], atol=1e-5)


def test_a_coarser_voxel_size_reads_the_coarser_level(tomo, tmp_path) -> None:
    """At 20 Å the 2×-binned level is read (8³ voxels for an 8-voxel box), close to Fourier-binning level 0."""
    star, _, store = tomo
    picks = read_picks(_zarr_picks(star, store, tmp_path / "zarr_picks.star"))
    located = locate_picks(picks, box=8, voxel_size=20.0)
    coarse_level = tomogram_levels(store)[1].level
    assert set(located["tomogram_level"]) == {coarse_level} and set(located["source_box"]) == {8}
    assert set(located["tomogram_voxel"]) == {20.0}
    np.testing.assert_array_equal(located[["cz", "cy", "cx"]].to_numpy(),
                                  np.rint(picks.df[["z", "y", "x"]].to_numpy(float) / 2).astype(int))
    ok = located.index[located["status"] == "ok"]
    dataset = particle_dataset(picks, box=8, voxel_size=20.0)  # the inference dataset (boxes as read)
    level0, level1 = (open_tomogram(store, lv.level) for lv in tomogram_levels(store))
    corr = []
    for i, row in enumerate(located.loc[ok].itertuples()):
        coarse = np.asarray(dataset[i]["image"])[0]
        read = np.asarray(level1[row.cz - 4:row.cz + 4, row.cy - 4:row.cy + 4, row.cx - 4:row.cx + 4], np.float32)
        np.testing.assert_array_equal(coarse, read)  # level 1's own voxels, no resampling
        z, y, x = 2 * row.cz, 2 * row.cy, 2 * row.cx
        fine = np.asarray(level0[z - 8:z + 8, y - 8:y + 8, x - 8:x + 8], np.float32)
        if fine.shape == (16, 16, 16):  # the same particle as binning level 0 (mean- vs Fourier-binning differ)
            corr.append(np.corrcoef(coarse.ravel(), fourier_resize(fine, (8, 8, 8)).ravel())[0, 1])
    assert len(corr) >= 3 and min(corr) > 0.8, corr


def test_channel_axis_and_nanometre_units(tmp_path) -> None:
    vol = np.random.default_rng(0).normal(size=(8, 16, 16)).astype(np.float32)
    store = write_ome_zarr(tmp_path / "c.zarr", vol, voxel=1.5, unit="nanometer", channel=True)
    levels = tomogram_levels(store)
    assert [(lv.shape, lv.voxel_size) for lv in levels] == [((8, 16, 16), 15.0), ((4, 8, 8), 30.0)]
    np.testing.assert_array_equal(open_tomogram(store)[2:4, 5:9, 0:3], vol[2:4, 5:9, 0:3])


def test_bad_stores_get_one_line_errors(tmp_path) -> None:
    plain = zarr.open_group(str(tmp_path / "plain.zarr"), mode="w")
    plain.create_dataset("0", data=np.zeros((4, 4, 4), np.float32), shape=(4, 4, 4))
    with pytest.raises(CryoDataError, match="no OME-Zarr 'multiscales' metadata"):
        tomogram_levels(tmp_path / "plain.zarr")
    with pytest.raises(CryoDataError, match="not a readable Zarr group"):
        tomogram_levels(tmp_path / "missing.zarr")
    yx = write_ome_zarr(tmp_path / "yx.zarr", np.zeros((4, 4, 4), np.float32), 10.0, levels=1)
    meta = zarr.open_group(str(yx), mode="r+")
    key = "ome" if "ome" in meta.attrs else "multiscales"  # OME-NGFF 0.5 (zarr 3) keeps it under "ome"
    attrs = meta.attrs[key]
    ms = attrs["multiscales"] if key == "ome" else attrs
    ms[0]["axes"] = [{"name": a, "type": "space"} for a in "xyz"]
    meta.attrs[key] = attrs
    with pytest.raises(CryoDataError, match=r"do not end in z, y, x"):
        tomogram_levels(yx)
    with pytest.raises(ConfigError, match="has no level '7'"):  # the level asked for, not the store
        open_tomogram(write_ome_zarr(tmp_path / "ok.zarr", np.zeros((4, 4, 4), np.float32), 10.0), "7")
    picks = tmp_path / "picks.csv"
    pd.DataFrame({"tomogram": ["missing.zarr"], "x": [1], "y": [1], "z": [1]}).to_csv(picks, index=False)
    with pytest.raises(CryoDataError, match=r"row 1.*missing\.zarr.*not a readable Zarr group") as err:
        locate_picks(read_picks(picks), box=4)
    assert "\n" not in str(err.value)


PICKS_ZYX = [(100, 500, 700), (320, 2048, 2048), (500, 3000, 1000), (200, 1000, 3500)]


@pytest.mark.slow
def test_an_ome_zarr_tomogram_larger_than_memory_is_read_box_by_box(tmp_path) -> None:
    """A 2.5× RAM logical OME-Zarr (chunks never written read as 0): extraction and inference stay < 1.5 GB."""
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    nz, ny, nx = 640, 4096, 4096
    while 4 * nz * ny * nx < 2.5 * ram:
        nz *= 2
    store = tmp_path / "big.zarr"
    group = zarr.open_group(str(store), mode="w")
    array = group.create_dataset("0", shape=(nz, ny, nx), chunks=(64, 64, 64), dtype="f4", fill_value=0)
    for z, y, x in PICKS_ZYX:
        array[z - 2:z + 3, y - 2:y + 3, x - 2:x + 3] = 1.0  # writes only the chunks these touch
    group.attrs["multiscales"] = [{"version": "0.4", "axes": _axes(),
                                   "datasets": [{"path": "0", "coordinateTransformations": [
                                       {"type": "scale", "scale": [10.0] * 3}]}]}]
    on_disk = sum(f.stat().st_size for f in store.rglob("*") if f.is_file())
    assert 4 * nz * ny * nx > 2 * ram and on_disk < 50e6
    from test_big_tomogram import read_boxes_in_a_subprocess  # the same reading process as for the big MRC file

    got = read_boxes_in_a_subprocess(store, PICKS_ZYX, tmp_path)
    print(f"peak RSS {got['max_rss'] / 1e9:.2f} GB reading a {4 * nz * ny * nx / 2**30:.0f} GiB OME-Zarr tomogram")
    assert got["max_rss"] < 1.5e9, f"peak RSS {got['max_rss'] / 1e9:.2f} GB"
