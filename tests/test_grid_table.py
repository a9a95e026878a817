"""The experiment grid on a user's own labelled particles (the paper's Table 2 path): a dataset entry
that names a particle table instead of simulation arguments."""

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cryomonai.data import build_volume_cache
from cryomonai.data.extract import fourier_resize
from cryomonai.errors import ConfigError, CryoDataError
from cryomonai.experiment.grid import GridPreset, GridRunner, load_preset, run_grid
from cryomonai.io import read_mrc, read_particle_table, write_mrc
from cryomonai.simulate.dataset import simulate_dataset

NAMES = {"1bxn": "rubisco", "1qvr": "hsp", "3cf3": "vcp"}


@pytest.fixture(scope="module")
def user_table(tmp_path_factory) -> Path:
    """A user's folder: 12³ subtomograms (MRC) under vols/ and particles.csv with relative paths,
    human class names and no split column."""
    root = tmp_path_factory.mktemp("user")
    sim = simulate_dataset(root / "sim", n_per_class=6, snr=2.0, box=12, classes=tuple(NAMES), seed=1, n_neighbours=0,
                           max_shift=1.0, workers=0, progress=False)
    table = read_particle_table(sim).df
    mine = root / "mine"
    (mine / "vols").mkdir(parents=True)
    rows = []
    for i, row in enumerate(table.itertuples()):
        shutil.copy(row.path, mine / "vols" / f"p{i:03d}.mrc")
        rows.append({"path": f"vols/p{i:03d}.mrc", "label": NAMES[row.label]})
    pd.DataFrame(rows).to_csv(mine / "particles.csv", index=False)
    shutil.rmtree(root / "sim")
    return mine / "particles.csv"


def _snapshot(folder: Path) -> dict[str, tuple]:
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _preset_file(folder: Path, table: str, **entry) -> Path:
    spec = dict(
        datasets=[{"name": "mine", "table": table, "working_box": 8, **entry}],
        methods=["random", "simclr"], label_fractions=[0.5, 1.0], repeats=2, seed=0, encoder="rb3d_bn",
        common={"batch_size": 4, "num_workers": 0}, pretrain={"epochs": 1, "batch_size": 8}, finetune={"epochs": 1},
        report={"gradcam_examples": 2},
    )
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "tiny_real.json"
    path.write_text(json.dumps(spec))
    return path


def test_grid_runs_on_a_users_table_in_place(user_table, tmp_path):
    """Items 1-4: the table is read in place (nothing in the user's folder changes), the split it
    lacked is made stratified next to the grid's outputs and reused on resume, volumes are brought
    to the working box once into the cache, and the report names the table's classes and sizes."""
    before = _snapshot(user_table.parent)
    relative = os.path.relpath(user_table, tmp_path / "presets")  # ../../user0/mine/particles.csv
    preset = load_preset(_preset_file(tmp_path / "presets", relative))
    assert preset.datasets[0]["table"] == str(user_table.resolve())  # relative to the preset file
    out = tmp_path / "grid"
    results = run_grid(preset, out, progress=False)
    assert _snapshot(user_table.parent) == before
    assert len(results) == 8 and results["snr"].isna().all()

    split_path = out / "data" / "mine" / "particles.star"
    made = read_particle_table(split_path)
    assert made.class_names == sorted(NAMES.values()) or set(made.class_names) == set(NAMES.values())
    counts = made.df.groupby(["label", "split"]).size().unstack()
    assert (counts["train"] == 4).all() and (counts["val"] == 1).all() and (counts["test"] == 1).all()  # 60/20/20 of 6
    assert all(Path(p).is_absolute() and Path(p).parent == user_table.parent / "vols" for p in made.df["path"])

    cache = np.load(out / "data" / "mine" / "cache" / "volumes.npy", mmap_mode="r")
    side = json.loads((out / "data" / "mine" / "cache" / "volumes.npy.json").read_text())
    assert cache.shape == (18, 8, 8, 8) and side["input_shape"] == [12, 12, 12] and side["working_box"] == 8
    first, _ = read_mrc(made.df["path"].iloc[0])
    assert np.allclose(cache[0], first[2:10, 2:10, 2:10], atol=2e-3 * np.abs(first).max())  # centre crop at the same voxel size

    table_md = (out / "table.md").read_text()
    assert "## Data" in table_md and "12³" in table_md and "8³" in table_md
    assert all(name in table_md for name in NAMES.values()) and "| `mine` |" in table_md
    assert "SNR" not in table_md.split("## Data")[0].split("\n")[0]

    stamp = split_path.stat().st_mtime_ns
    again = run_grid(preset, out, progress=False)  # resume: nothing reruns, the split is reused as it is
    pd.testing.assert_frame_equal(again, results)
    assert split_path.stat().st_mtime_ns == stamp and _snapshot(user_table.parent) == before


def test_a_table_with_a_split_is_used_as_it_is(user_table, tmp_path):
    folder = tmp_path / "with_split"
    shutil.copytree(user_table.parent, folder)
    df = pd.read_csv(folder / "particles.csv")
    df["split"] = ["train", "train", "val", "test", "train", "train"] * 3
    df.to_csv(folder / "particles.csv", index=False)
    runner = GridRunner(load_preset(_preset_file(tmp_path, str(folder / "particles.csv"))), tmp_path / "grid", False)
    runner.prepare_data("mine")
    assert runner.data.table_path("mine") == folder / "particles.csv"
    assert not (tmp_path / "grid" / "data" / "mine" / "particles.star").exists()
    # a split on some rows only is ambiguous
    df.loc[0, "split"] = ""
    df.to_csv(folder / "particles.csv", index=False)
    with pytest.raises(CryoDataError, match=r"grid dataset 'mine'.*1 rows have no split"):
        GridRunner(load_preset(_preset_file(tmp_path, str(folder / "particles.csv"))), tmp_path / "grid2", False).prepare_data("mine")


def test_small_classes_warn_and_are_kept(user_table, tmp_path):
    folder = tmp_path / "small"
    shutil.copytree(user_table.parent, folder)
    df = pd.read_csv(folder / "particles.csv")
    df = pd.concat([df[df["label"] != "vcp"], df[df["label"] == "vcp"].head(2)])  # vcp: 2 particles, 1 for training
    df.to_csv(folder / "particles.csv", index=False)
    runner = GridRunner(load_preset(_preset_file(tmp_path, str(folder / "particles.csv"))), tmp_path / "grid", False)
    with pytest.warns(UserWarning, match=r"class 'vcp' has 1 labelled training particles; at 50 % labels it keeps 1"):
        runner.prepare_data("mine")
    assert "vcp" in read_particle_table(runner.data.table_path("mine")).class_names


def test_working_size_resamples_once_into_the_cache(user_table, tmp_path):
    """Fourier-crop to a coarser voxel (12³ at v → 6³ at 2v), then pad to the working box with the mean."""
    table = read_particle_table(user_table)
    vol, voxel = read_mrc(table.df["path"].iloc[0])
    cache = build_volume_cache(table, tmp_path / "c.npy", working_box=8, working_voxel_size=2 * voxel, progress=False)
    side = json.loads((tmp_path / "c.npy.json").read_text())
    stack = np.load(cache)
    assert stack.shape == (18, 8, 8, 8) and np.isclose(side["voxel_size"], 2 * voxel) and side["input_voxel_size"] == voxel
    binned = fourier_resize(vol, (6, 6, 6))
    assert np.allclose(stack[0, 1:7, 1:7, 1:7], binned, atol=2e-3 * np.abs(binned).max())
    assert np.allclose(stack[0, 0], binned.mean(), atol=1e-3 * np.abs(binned).max())  # padding: the mean
    # a run that does not ask for a size takes the cache as built; asking for another size rebuilds it
    build_volume_cache(table, cache, progress=False)
    assert np.load(cache).shape == (18, 8, 8, 8)
    build_volume_cache(table, cache, working_box=12, progress=False)
    assert np.load(cache).shape == (18, 12, 12, 12)


def test_mixed_box_sizes_are_one_line_errors(user_table, tmp_path):
    folder = tmp_path / "mixed"
    shutil.copytree(user_table.parent, folder)
    vol, voxel = read_mrc(folder / "vols" / "p005.mrc")
    write_mrc(folder / "vols" / "p005.mrc", np.zeros((10, 10, 10), np.float32), voxel_size=voxel)
    runner = GridRunner(load_preset(_preset_file(tmp_path, str(folder / "particles.csv"))), tmp_path / "grid", False)
    with pytest.raises(CryoDataError) as err:
        runner.prepare_data("mine")
    assert "grid dataset 'mine'" in str(err.value) and "p005.mrc" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("case", ["no_table", "missing_table", "missing_files", "no_label_column", "both_keys",
                                  "real_without_table", "one_class", "no_test_split"])
def test_table_entry_errors_name_the_entry_and_the_fix(case, user_table, tmp_path):
    folder = tmp_path / "bad"
    shutil.copytree(user_table.parent, folder)
    table = str(folder / "particles.csv")
    if case == "missing_files":
        (folder / "vols" / "p003.mrc").unlink()
    if case == "no_label_column":
        pd.read_csv(table)[["path"]].to_csv(table, index=False)
    if case == "one_class":  # nothing to tell apart: it used to pass with warnings only
        df = pd.read_csv(table)
        df[df["label"] == "rubisco"].to_csv(table, index=False)
    if case == "no_test_split":  # a split column without test rows: no cell could be tested
        pd.read_csv(table).assign(split=lambda d: np.where(d.index % 2, "train", "val")).to_csv(table, index=False)
    kind = (CryoDataError if case in ("missing_files", "no_label_column", "one_class", "no_test_split")
            else ConfigError)  # whose fault it is
    with pytest.raises(kind) as err:
        if case == "no_table":
            GridPreset(name="x", datasets=[{"name": "mine", "table": None}], methods=["random"])
        elif case == "both_keys":
            load_preset(_preset_file(tmp_path, table, snr=0.05, n_per_class=10))
        elif case == "real_without_table":
            load_preset("real")
        else:
            path = table if case != "missing_table" else str(folder / "nothere.star")
            GridRunner(load_preset(_preset_file(tmp_path, path)), tmp_path / "grid", False).prepare_data("mine")
    message = str(err.value)
    assert "\n" not in message and "— fix:" in message and "'mine'" in message, message
    expected = {"no_table": "has no table", "missing_table": "table not found", "missing_files": "p003.mrc",
                "no_label_column": "class", "both_keys": "simulation keys ['n_per_class', 'snr']",
                "real_without_table": "--dataset_table", "one_class": "labelled particles of 1 class",
                "no_test_split": "has no test particles (train 9, val 9, test 0)"}[case]
    assert expected in message, message


def test_real_preset_is_the_fair_protocol_and_runs_every_recipe(user_table, tmp_path):
    """Issue 26 on a user's own table (``--preset real``): every method of the issue, each arm's recipe chosen
    per label fraction on validation among the paper's SGD, Adam at two rates, a start at the linear probe
    with a slower encoder and LP-FT, widened at the edge; and each of those recipes, as ``real`` declares
    it, trains through the grid on a table (here at toy sizes), with the optimizer it names."""
    import torch

    preset = load_preset("real", dataset_table=str(user_table))
    assert set(preset.methods) == {"random", "simclr", "moco", "swav", "vicreg"}
    assert preset.choose_per_fraction and preset.extend_edges["max_steps"] >= 1
    assert sorted(preset.selection_fractions) == sorted(preset.label_fractions)
    recipes = preset.recipe_overrides()
    assert any(r.get("lp_probe") and r["encoder_lr"] < r["lr"] for r in recipes.values())  # keeps pretrained features
    assert any(r.get("lp_epochs", 0) > 0 for r in recipes.values())  # LP-FT

    toy = load_preset("real", datasets=[{"name": "mine", "table": str(user_table), "working_box": 8}],
                      methods=["random", "simclr"], label_fractions=[1.0], selection_fractions=[1.0], repeats=1,
                      common={"batch_size": 4, "num_workers": 0}, pretrain={"epochs": 1, "batch_size": 8},
                      finetune={**preset.finetune, "epochs": 1}, extend_edges={"factor": 3, "max_steps": 1},
                      readouts=False)
    out = tmp_path / "grid"
    results = run_grid(toy, out, report=False, progress=False)
    assert len(results) == 2
    selection = pd.read_csv(out / "selection.csv")
    for method in toy.methods:
        tried = selection[selection["method"] == method]
        assert set(recipes) <= set(tried["recipe"]) and tried["best_val_accuracy"].between(0, 1).all()
    for recipe, state in (("sgd_5e-4", "momentum_buffer"), ("adam_1e-3", "exp_avg")):
        ckpt = torch.load(out / "cells" / "mine" / "random" / recipe / "f100_r0" / "models" / "finetune_final.pt",
                          weights_only=False)
        assert all(state in s for s in ckpt["optimizer"]["state"].values()), recipe


def test_real_preset_takes_the_table_from_the_command_line(user_table, monkeypatch):
    monkeypatch.chdir(user_table.parent.parent)
    preset = load_preset("real", dataset_table=f"{user_table.parent.name}/{user_table.name}")
    assert preset.datasets[0]["table"] == str(user_table.resolve()) and preset.datasets[0]["working_box"] == 28
    assert preset.label_fractions == [0.25, 0.5, 0.75, 1.0] and preset.repeats == 5 and "random" in preset.methods
    assert len(preset.recipe_overrides()) >= 2  # the fair protocol: recipes chosen on validation
    with pytest.raises(ConfigError, match="one table dataset"):
        load_preset("cpu", dataset_table=str(user_table))
