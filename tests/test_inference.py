"""The bundle's ``inference`` run id on tomogram + picks: a model fine-tuned (from random init, through
the bundle) on simulated subtomograms classifies the particles of a simulated tomogram; the outputs
(STAR, CSV, embeddings, PNG) keep every input column and open with ``starfile``."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import starfile
from monai.bundle import run

from cryomonai.data.extract import extract_subtomograms
from cryomonai.io.predictions import prediction_columns
from cryomonai.io import read_particle_table

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "bundles" / "cryo_ssl" / "configs"
INFERENCE = [str(CONFIGS / "common.json"), str(CONFIGS / "inference.json")]
CLASSES = ("1bxn", "3j9i", "1s3x")
BOX = 24
SMALL_NET = {"network_def#channels": 8, "network_def#norm": "batch"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Simulated subtomograms (3 classes × 24, SNR ∞, 24³, 2 neighbours) and a tomogram (48, 96, 96)
    with 15 particles of the same classes and imaging; 20 epochs of the bundle's ``finetune``."""
    from cryomonai.simulate.dataset import simulate_dataset
    from cryomonai.simulate.tomogram import simulate_tomogram

    root = tmp_path_factory.mktemp("inference")
    simulate_dataset(root / "data", n_per_class=24, snr=math.inf, box=BOX, classes=CLASSES, n_neighbours=2,
                     max_shift=2.0, seed=0, workers=0, progress=False)
    picks = simulate_tomogram(root / "tomo", (48, 96, 96), n_particles=15, snr=math.inf, classes=CLASSES, box=BOX,
                              seed=1)
    overrides = {"bundle_root": str(REPO / "bundles" / "cryo_ssl"), "dataset_dir": str(root / "data"),
                 "ckpt_dir": str(root / "models"), "simulate": False, "progress": False, "batch_size": 8, "box": BOX,
                 **SMALL_NET}
    run("finetune", config_file=[str(CONFIGS / "common.json"), str(CONFIGS / "finetune.json")], pretrained="",
        epochs=20, lr=0.05, output_dir=str(root / "eval"), **overrides)
    return {"root": root, "picks": picks, "overrides": overrides}


def _infer(trained: dict, out: str, **kw) -> Path:
    output_dir = trained["root"] / out
    run("inference", config_file=INFERENCE, output_dir=str(output_dir), **{**trained["overrides"], **kw})
    return output_dir


def test_inference_from_tomogram_and_picks_recovers_the_classes(trained: dict) -> None:
    out = _infer(trained, "pred", infer_table=str(trained["picks"]), infer_edge="pad")
    star = starfile.read(out / "predictions.star", always_dict=True)
    p, picks = star["particles"], starfile.read(trained["picks"], always_dict=True)["particles"]
    assert len(p) == len(picks) == 15
    # every input column is kept (the input class moves to cryoInputClassName), then the predictions
    probs = prediction_columns(CLASSES)
    assert set(picks.columns) - {"rlnClassNumber"} <= set(p.columns)
    assert {"cryoInputClassName", "cryoPredictedClassNumber", "cryoPredictedClassName", "rlnMaxValueProbDistribution",
            *probs} <= set(p.columns)
    np.testing.assert_array_equal(p["rlnCoordinateX"], picks["rlnCoordinateX"])
    np.testing.assert_allclose(p["rlnAngleRot"], picks["rlnAngleRot"], atol=1e-5)
    assert list(star["classes"]["cryoClassName"]) == list(CLASSES)
    assert (p["rlnClassNumber"] == p["cryoPredictedClassNumber"]).all()
    assert (p["cryoPredictedClassName"] == [CLASSES[k - 1] for k in p["cryoPredictedClassNumber"]]).all()
    np.testing.assert_allclose(p[probs].sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(p[probs].max(axis=1), p["rlnMaxValueProbDistribution"], atol=1e-6)
    accuracy = (p["cryoPredictedClassName"] == p["cryoInputClassName"]).mean()
    assert accuracy >= 2 / len(CLASSES), f"accuracy {accuracy:.2f} is not ≥ 2× chance"
    # the same rows in the CSV, the features of each row, and the embedding map
    csv = pd.read_csv(out / "predictions.csv", keep_default_na=False)
    assert list(csv["label"]) == list(p["cryoPredictedClassName"]) and list(csv["x"]) == list(picks["rlnCoordinateX"])
    assert (csv["label_index"] + 1 == csv["cryoPredictedClassNumber"]).all()
    embeddings = np.load(out / "embeddings.npy")
    assert embeddings.shape == (15, 64) and embeddings.dtype == np.float32 and np.isfinite(embeddings).all()
    assert (out / "embedding.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (out / "report.html").read_text()  # the interactive report (tests/test_report_html.py)
    assert 'id="tomogram-0"' in page and 'id="embedding"' in page and 'id="n-shown"' in page
    # the tomogram path is rewritten relative to the output folder
    assert (out / p["rlnMicrographName"].iloc[0]).resolve() == (trained["picks"].parent / "tomogram.mrc").resolve()
    # readable as a particle table: a classified picks table
    table = read_particle_table(out / "predictions.star", check_files=False)
    assert table.class_names == list(CLASSES) and list(table.df["label"]) == list(p["cryoPredictedClassName"])


def test_inference_on_extracted_files_matches_the_on_the_fly_extraction(trained: dict) -> None:
    on_the_fly = _infer(trained, "fly", infer_table=str(trained["picks"]), infer_edge="pad")
    extracted = extract_subtomograms(trained["picks"], trained["root"] / "extracted", box=BOX, edge="pad",
                                     progress=False)
    from_files = _infer(trained, "files", infer_table=str(extracted.table))
    a = starfile.read(on_the_fly / "predictions.star")["particles"]
    b = starfile.read(from_files / "predictions.star")["particles"]
    assert "rlnImageName" in b and "rlnImageName" not in a
    assert (b["rlnImageName"].map(lambda s: (from_files / s).is_file())).all()  # relative to the output folder
    probs = prediction_columns(CLASSES)
    np.testing.assert_allclose(a[probs].to_numpy(), b[probs].to_numpy(), atol=1e-4)
    features = [np.load(folder / "embeddings.npy") for folder in (on_the_fly, from_files)]
    np.testing.assert_allclose(features[0], features[1], atol=1e-3)


def test_inference_reports_the_picks_it_cannot_extract(trained: dict) -> None:
    out = _infer(trained, "report", infer_table=str(trained["picks"]))  # default edge policy: report
    rejected = pd.read_csv(out / "rejected_picks.csv")
    p = starfile.read(out / "predictions.star")["particles"]
    z = starfile.read(trained["picks"])["particles"]["rlnCoordinateZ"].to_numpy()
    crossing = np.flatnonzero((z < BOX // 2) | (z + BOX // 2 > 48)) + 1  # boxes crossing the top or bottom
    assert 0 < len(rejected) and set(crossing) <= set(rejected["row"])
    assert len(p) + len(rejected) == 15
    assert (rejected["reason"] == "box crosses the tomogram edge").all()


def test_inference_on_a_copick_project_writes_the_classes_back_as_copick_picks(trained: dict, copick_project) -> None:
    """The same particles as a copick project (OME-Zarr tomogram, picks in Å): the same predictions as
    from the MRC tomogram, and one pick set per class under our user id, scores = probabilities."""
    import copick

    config = copick_project(trained["root"] / "copick", {"TS_1": trained["picks"]}, CLASSES)
    from_mrc = pd.read_csv(_infer(trained, "mrc", infer_table=str(trained["picks"]), infer_edge="pad")
                           / "predictions.csv", keep_default_na=False)
    out = _infer(trained, "copick", infer_table=str(config), infer_copick={"tomo_type": "wbp"}, infer_edge="pad")
    got = pd.read_csv(out / "predictions.csv", keep_default_na=False)
    assert len(got) == len(from_mrc) == 15
    key = ["x", "y", "z"]
    a, b = (df.assign(**{k: df[k].round(3) for k in key}).sort_values(key).reset_index(drop=True)
            for df in (got, from_mrc))
    np.testing.assert_allclose(a[prediction_columns(CLASSES)], b[prediction_columns(CLASSES)], atol=1e-4)
    run = copick.from_file(str(config)).get_run("TS_1")
    ours = {p.pickable_object_name: p for p in run.get_picks(user_id="cryomonai")}
    assert set(ours) == set(CLASSES)
    for cls, picks in ours.items():
        rows = a[a["label"] == cls]
        assert len(picks.points) == len(rows)
        if len(rows):
            order = np.lexsort(picks.full_positions().T[::-1])
            np.testing.assert_allclose(picks.full_positions()[order], rows[key].to_numpy(float) * 10, atol=1e-3)
            np.testing.assert_allclose(picks.scores()[order], rows["rlnMaxValueProbDistribution"], atol=1e-6)


def _user_error(call) -> Exception:
    """The cryomonai error behind what ``call`` raises (MONAI wraps it in RuntimeError)."""
    from cryomonai.errors import user_error

    with pytest.raises(Exception) as info:
        call()
    err = user_error(info.value)
    assert err is not None and "\n" not in str(err), repr(info.value)
    return err


def test_the_shipped_classifier_refuses_boxes_it_was_not_trained_on(trained: dict) -> None:
    """The shipped classifier expects 16³ boxes at 20 Å (its weights.json): fed the bundle's default 32³ at the
    tomogram's 10 Å, inference stops with one line and the fix, before writing anything; a wrong name or a file
    that is no checkpoint stops before anything is written too. With the right boxes it runs."""
    shipped = {"bundle_root": str(REPO / "bundles" / "cryo_ssl"), "progress": False, "encoder": "rb3d_bn",
               "infer_table": str(trained["picks"]), "infer_edge": "pad"}
    out = trained["root"] / "shipped"

    def infer(**kw) -> None:
        run("inference", config_file=INFERENCE, output_dir=str(out), **{**shipped, **kw})

    err = _user_error(lambda: infer(checkpoint="simclr_rb3d_bn_16_classifier"))
    assert "expects 16³ boxes at 20 Å; these are 32³ at 10 Å" in str(err)
    assert "--box 16 --infer_voxel_size 20" in err.fix
    err = _user_error(lambda: infer(checkpoint="simclr_rb3d_bn_16_classifier", box=16))  # the box, not the scale
    assert "these are 16³ at 10 Å" in str(err)
    assert "shipped names" in _user_error(lambda: infer(checkpoint="simclr_rb3d_bn_16_clasifier", box=16)).fix
    junk = trained["root"] / "junk.pt"
    junk.write_text("not a checkpoint")
    err = _user_error(lambda: infer(checkpoint=str(junk), box=16))
    assert "not a readable PyTorch checkpoint" in str(err) and "pretrain' first" not in err.fix
    assert not out.exists()  # no rejected_picks.csv, no folder
    infer(checkpoint="simclr_rb3d_bn_16_classifier", box=16, infer_voxel_size=20)
    assert len(starfile.read(out / "predictions.star")["particles"]) == 15


def test_a_subtomogram_table_is_checked_on_its_first_file(trained: dict) -> None:
    from cryomonai.data.picks import particle_dataset
    from cryomonai.errors import ConfigError

    table = read_particle_table(trained["root"] / "data" / "particles.star")  # 24³ at 10 Å
    with pytest.raises(ConfigError, match=r"expects 16³ boxes at 20 Å; these are 24³ at 10 Å — fix: extract "):
        particle_dataset(table, model_input={"name": "m", "box": 16, "voxel_size": 20.0})
    assert len(particle_dataset(table, model_input={"name": "m", "box": 24, "voxel_size": 10.0})) == len(table.df)


def test_a_fine_tuned_classifier_records_its_input_and_refuses_others(trained: dict) -> None:
    """Fine-tuning records the box and voxel size it trained on (24³ at 10 Å, from the first file's header) in
    the checkpoint's run info, so inference checks a user's own classifier as it checks the shipped ones; and
    ``evaluate`` checks its table against the classifier too (the shipped 16³ / 20 Å one on these 24³ boxes)."""
    from cryomonai.engines import read_run_info

    best = trained["root"] / "models" / "finetune_best.pt"
    info = read_run_info(best)
    assert (info["box"], info["voxel_size"]) == (BOX, 10.0)
    err = _user_error(lambda: _infer(trained, "wrong_box", box=16, infer_table=str(trained["picks"]), infer_edge="pad"))
    assert "expects 24³ boxes at 10 Å; these are 16³ at 10 Å" in str(err) and "--box 24" in err.fix
    assert not (trained["root"] / "wrong_box").exists()
    evaluate = [str(CONFIGS / name) for name in ("common.json", "finetune.json", "evaluate.json")]
    out = trained["root"] / "evaluate_checks"
    data = {k: v for k, v in trained["overrides"].items() if not k.startswith("network_def")}
    err = _user_error(lambda: run("evaluate", config_file=evaluate, output_dir=str(out), **{
        **data, "checkpoint": "simclr_rb3d_bn_16_classifier", "encoder": "rb3d_bn"}))  # 10 classes, not these 3
    assert "classifies 10 classes (" in str(err) and "the table has 3 classes (1bxn, 3j9i, 1s3x)" in str(err)
    err = _user_error(lambda: run("evaluate", config_file=evaluate, output_dir=str(out), **{
        **trained["overrides"], "working_box": 16, "working_voxel_size": 20,
        "cache_path": str(trained["root"] / "cache_16_20.npy")}))  # its own classifier, on a cache resized away
    assert "expects 24³ boxes at 10 Å; these are 16³ at 20 Å — fix: give --working_box 24 --working_voxel_size 10" in str(err)
    assert not (out / "predictions_test.csv").exists()
    run("evaluate", config_file=evaluate, output_dir=str(out), **trained["overrides"])
    table = read_particle_table(trained["root"] / "data" / "particles.star")
    assert len(pd.read_csv(out / "predictions_test.csv")) == (table.df["split"] == "test").sum() > 0


def test_the_recorded_input_is_the_working_size_the_model_trained_on(tmp_path: Path, trained: dict) -> None:
    """``working_box`` / ``working_voxel_size`` resize the cache the model trains on: that size, not the files'
    (24³ at 10 Å), is the input a checkpoint records and ``evaluate`` checks."""
    from cryomonai.data import VolumeStackDataset, build_volume_cache
    from cryomonai.data.picks import check_dataset_input
    from cryomonai.errors import ConfigError

    table = trained["root"] / "data" / "particles.star"
    assert VolumeStackDataset(table, tmp_path / "as_is.npy", progress=False).input_size == {"box": 24, "voxel_size": 10.0}
    build_volume_cache(read_particle_table(table), tmp_path / "binned.npy", working_box=16, working_voxel_size=20.0,
                       progress=False)
    binned = VolumeStackDataset(table, tmp_path / "binned.npy", split="test", progress=False)
    assert binned.input_size == {"box": 16, "voxel_size": 20.0}
    check_dataset_input({"name": "m", "box": 16, "voxel_size": 20.0}, binned)
    with pytest.raises(ConfigError, match=r"expects 24³ boxes at 10 Å; these are 16³ at 20 Å — fix: give --working_box 24 "):
        check_dataset_input({"name": "m", "box": 24, "voxel_size": 10.0}, binned)
