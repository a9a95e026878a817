"""Tests for cryomonai.data: splits, nested label subsets, data dicts, the volume cache and datasets."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from cryomonai.data import (
    VolumeStackDataset,
    build_volume_cache,
    label_subset,
    stratified_split,
    table_to_data_dicts,
    validate_volumes,
)
from cryomonai.errors import ConfigError, CryoDataError
from cryomonai.io import read_mrc, read_particle_table, write_mrc, write_particle_table

BOX = 6

# ------------------------------------------------------------------ splits


def _labels():
    return np.array(["a"] * 10 + ["b"] * 20 + ["c"] * 5, dtype=object)


def test_stratified_split_proportions_per_class():
    labels = _labels()
    split = stratified_split(labels, (0.6, 0.2, 0.2), seed=0)
    counts = pd.crosstab(labels, split)
    assert counts.loc["a"].to_dict() == {"test": 2, "train": 6, "val": 2}
    assert counts.loc["b"].to_dict() == {"test": 4, "train": 12, "val": 4}
    assert counts.loc["c"].to_dict() == {"test": 1, "train": 3, "val": 1}


def test_stratified_split_is_deterministic_and_per_class():
    labels = _labels()
    first = stratified_split(labels, seed=3)
    assert np.array_equal(first, stratified_split(labels, seed=3))
    assert not np.array_equal(first, stratified_split(labels, seed=4))
    only_a = stratified_split(labels[:10], seed=3)  # class "a" alone: same assignment
    assert np.array_equal(only_a, first[:10])


def test_stratified_split_unlabelled_items_and_bad_fractions():
    labels = ["a", "a", None, np.nan, -1, "a"]
    split = stratified_split(labels, (0.34, 0.33, 0.33), seed=0)
    assert sorted(split[[2, 3, 4]]) == ["test", "train", "val"]  # the unlabelled are one group
    with pytest.raises(ConfigError, match="split fractions"):
        stratified_split(labels, (0.5, 0.2, 0.2))
    with pytest.raises(ConfigError, match="split fractions"):
        stratified_split(labels, (0.5, 0.5))


def test_label_subsets_are_nested_and_stratified():
    labels = _labels()
    masks = [label_subset(labels, f, seed=1) for f in (0.25, 0.5, 0.75, 1.0)]
    for smaller, larger in zip(masks, masks[1:]):
        assert not (smaller & ~larger).any()
    for fraction, mask in zip((0.25, 0.5, 0.75, 1.0), masks):
        for cls, n in (("a", 10), ("b", 20), ("c", 5)):
            assert mask[labels == cls].sum() == int(np.ceil(fraction * n))
    assert masks[-1].all()
    assert not np.array_equal(masks[0], label_subset(labels, 0.25, seed=2))


def test_label_subset_never_takes_unlabelled_and_checks_classes():
    labels = np.array([0, 0, 1, 1, -1, -1])
    mask = label_subset(labels, 1.0, seed=0)
    assert mask.tolist() == [True, True, True, True, False, False]
    with pytest.raises(CryoDataError, match="class '2' would have 0 labelled examples"):
        label_subset(labels, 0.5, seed=0, classes=[0, 1, 2])
    for bad in (0.0, 1.5):
        with pytest.raises(ConfigError, match="label fraction"):
            label_subset(labels, bad)


# ------------------------------------------------------------------ tables on disk


def _make_table(tmp_path, n=6, name="t.csv", with_split=True):
    rng = np.random.default_rng(0)
    (tmp_path / "vols").mkdir(exist_ok=True)
    paths = []
    for i in range(n):
        path = tmp_path / "vols" / f"{i}.mrc"
        if not path.exists():
            write_mrc(path, rng.normal(size=(BOX,) * 3) * 10, voxel_size=13.6)
        paths.append(f"vols/{i}.mrc")
    labels = (["ribo", "prot"] * n)[:n]
    df = pd.DataFrame({"path": paths, "label": labels})
    if with_split:
        df["split"] = (["train", "train", "val"] * n)[:n]
    df.to_csv(tmp_path / name, index=False)
    return read_particle_table(tmp_path / name, class_names=["ribo", "prot"])


def test_table_to_data_dicts(tmp_path):
    table = _make_table(tmp_path)
    items = table_to_data_dicts(table)
    assert items[1] == {"image": str(tmp_path / "vols" / "1.mrc"), "label": 1, "name": "prot", "index": 1}
    val = table_to_data_dicts(tmp_path / "t.csv", split="val")  # read without class_names: sorted
    assert [d["index"] for d in val] == [2, 5] and [d["name"] for d in val] == ["ribo", "prot"]
    assert [d["label"] for d in val] == [1, 0]
    with pytest.raises(ConfigError, match="unknown split 'dev'"):
        table_to_data_dicts(table, split="dev")
    no_split = _make_table(tmp_path, name="u.csv", with_split=False)
    with pytest.raises(CryoDataError, match="has no split column"):
        table_to_data_dicts(no_split, split="train")
    coords = pd.DataFrame({"tomogram": ["t"], "x": [1.0], "y": [2.0], "z": [3.0]})
    write_particle_table(coords, tmp_path / "picks.star", class_names=[])
    with pytest.raises(CryoDataError, match=r"picks\.star: lists particle coordinates but no subtomogram files"):
        table_to_data_dicts(tmp_path / "picks.star")


def test_validate_volumes(tmp_path):
    table = _make_table(tmp_path, n=2)
    paths = list(table.df["path"])
    assert validate_volumes(paths) == (BOX,) * 3
    write_mrc(tmp_path / "odd.mrc", np.zeros((BOX + 2,) * 3))
    with pytest.raises(CryoDataError, match=rf"odd\.mrc: volume is 8x8x8 but .*0\.mrc is {BOX}x{BOX}x{BOX}"):
        validate_volumes([*paths, tmp_path / "odd.mrc"])
    with pytest.raises(CryoDataError, match="a box of 8 voxels is expected"):
        validate_volumes(paths, box=8)


# ------------------------------------------------------------------ volume cache


def test_cache_items_equal_direct_reads(tmp_path):
    table = _make_table(tmp_path)
    ds = VolumeStackDataset(table, tmp_path / "cache" / "stack.npy", progress=False)
    assert len(ds) == 6 and ds.stack.shape == (6, BOX, BOX, BOX) and ds.stack.dtype == np.float16
    for i in (0, 3):
        item = ds[i]
        direct, _ = read_mrc(table.df["path"][i])
        assert item["image"].shape == (1, BOX, BOX, BOX) and item["image"].dtype == torch.float32
        np.testing.assert_allclose(item["image"][0].numpy(), direct, rtol=1e-3, atol=1e-2)
        assert (item["label"], item["index"], item["name"]) == (table.df["label_index"][i], i, table.df["label"][i])
        np.testing.assert_allclose(item["image"].pixdim.numpy(), [13.6] * 3, rtol=1e-6)
    sidecar = json.loads((tmp_path / "cache" / "stack.npy.json").read_text())
    assert sidecar["table"] == str(tmp_path / "t.csv") and sidecar["shape"] == [6, BOX, BOX, BOX]


def test_cache_split_and_transform(tmp_path):
    from monai.data import DataLoader
    from monai.transforms import Lambdad

    table = _make_table(tmp_path)
    ds = VolumeStackDataset(table, tmp_path / "s.npy", split="val", dtype=np.float32, progress=False,
                            transform=Lambdad(keys="image", func=lambda x: x * 0 + 7))
    assert [ds[i]["index"] for i in range(len(ds))] == [2, 5]
    batch = next(iter(DataLoader(ds, batch_size=2)))
    assert batch["image"].shape == (2, 1, BOX, BOX, BOX) and torch.all(batch["image"] == 7)
    assert batch["label"].tolist() == [0, 1]


def test_cache_is_reused_then_rebuilt_when_table_changes(tmp_path, monkeypatch):
    import cryomonai.data.dataset as dataset

    table = _make_table(tmp_path)
    cache = build_volume_cache(tmp_path / "t.csv", tmp_path / "c.npy", progress=False)

    def fail(*args, **kwargs):
        raise AssertionError("the cache should have been reused")

    with monkeypatch.context() as m:
        m.setattr(dataset, "read_mrc", fail)
        assert build_volume_cache(tmp_path / "t.csv", tmp_path / "c.npy", progress=False) == cache
    reordered = table.subset(np.ones(len(table), bool))
    reordered.df = reordered.df.iloc[::-1].reset_index(drop=True)
    write_particle_table(reordered, tmp_path / "t.csv")  # same rows, new order: table file changed
    build_volume_cache(tmp_path / "t.csv", cache, progress=False)
    first, _ = read_mrc(reordered.df["path"][0])
    np.testing.assert_allclose(np.load(cache)[0].astype(np.float32), first, rtol=1e-3, atol=1e-2)
    smaller = table.subset(np.arange(len(table)) < 3)  # in-memory subset: other volumes
    build_volume_cache(smaller, cache, progress=False)
    assert np.load(cache).shape == (3, BOX, BOX, BOX)


@pytest.mark.parametrize("problem", ["nan", "non_cubic", "overflow", "voxel_size", "missing"])
def test_cache_names_the_offending_file(tmp_path, problem):
    table = _make_table(tmp_path, n=3)
    bad = table.df["path"][1]
    if problem == "nan":
        vol = np.zeros((BOX,) * 3)
        vol[0, 0, 0] = np.nan
        with pytest.warns(RuntimeWarning):  # mrcfile warns about the header stats
            import mrcfile

            with mrcfile.new(bad, overwrite=True) as mrc:
                mrc.set_data(vol.astype(np.float32))
        expected = r"1\.mrc: contains 1 NaN/Inf voxels"
    elif problem == "non_cubic":
        write_mrc(bad, np.zeros((BOX, BOX, BOX - 1)))
        expected = rf"1\.mrc: volume is {BOX}x{BOX}x{BOX - 1} \(z×y×x\), not cubic"
    elif problem == "overflow":
        write_mrc(bad, np.full((BOX,) * 3, 1e5))
        expected = r"1\.mrc: values overflow float16"
    elif problem == "voxel_size":
        write_mrc(bad, np.zeros((BOX,) * 3), voxel_size=10.0)
        expected = r"1\.mrc: voxel size 10 Å differs from 13\.6 Å of .*0\.mrc"
    else:
        Path(bad).unlink()
        expected = r"1\.mrc: file not found"
    with pytest.raises(CryoDataError, match=expected):
        build_volume_cache(table, tmp_path / "c.npy", progress=False)
    assert not (tmp_path / "c.npy").exists() and not (tmp_path / "c.npy.json").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left


def test_volume_stack_dataset_pickles_without_the_stack(tmp_path):
    ds = VolumeStackDataset(_make_table(tmp_path), tmp_path / "c.npy", progress=False)
    _ = ds[0]  # opens the memory map
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._stack is None
    assert torch.equal(clone[4]["image"], ds[4]["image"])


# ------------------------------------------------------------------ plain MONAI


def test_monai_cache_dataset_with_mrc_reader(tmp_path):
    from monai.data import CacheDataset, DataLoader
    from monai.transforms import Compose, LoadImaged

    table = _make_table(tmp_path)
    load = Compose([LoadImaged(keys="image", reader="cryomonai.io.MrcReader", ensure_channel_first=True)])
    ds = CacheDataset(table_to_data_dicts(table, split="train"), transform=load, progress=False, num_workers=0)
    batch = next(iter(DataLoader(ds, batch_size=4)))
    assert batch["image"].shape == (4, 1, BOX, BOX, BOX)
    assert batch["label"].tolist() == [0, 1, 1, 0] and batch["index"].tolist() == [0, 1, 3, 4]
    direct, _ = read_mrc(table.df["path"][3])
    np.testing.assert_array_equal(batch["image"][2, 0].numpy(), direct)
