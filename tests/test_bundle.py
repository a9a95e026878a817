"""The MONAI bundle ``bundles/cryo_ssl``: every config parses and composes; pretrain → finetune →
evaluate → inference run through ``monai.bundle`` on a tiny simulated dataset; resume; DDP on CPU."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from ignite.engine import Events
from monai.bundle import ConfigParser, run
from monai.bundle.scripts import create_workflow
from monai.transforms import Randomizable

from cryomonai.engines import PrepareBatchMemoryFormat
from cryomonai.networks import ENCODERS
from cryomonai.ssl import METHODS
from cryomonai.transforms import BatchedViews, ViewPipeline

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "bundles" / "cryo_ssl"
CONFIGS = BUNDLE / "configs"
CLASSES = ("1bxn", "1qvr", "1s3x")


def _files(*names: str) -> list[str]:
    return [str(CONFIGS / name) for name in names]


PRETRAIN = _files("common.json", "pretrain.json")
FINETUNE = _files("common.json", "finetune.json")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tiny simulated dataset (3 classes × 8, 24³) and the overrides pointing the bundle at tmp dirs."""
    from cryomonai.simulate.dataset import simulate_dataset

    root = tmp_path_factory.mktemp("bundle")
    simulate_dataset(root / "data", n_per_class=8, box=24, classes=CLASSES, seed=0, workers=0, progress=False)
    overrides = {
        "bundle_root": str(BUNDLE),
        "dataset_dir": str(root / "data"),
        "ckpt_dir": str(root / "models"),
        "output_dir": str(root / "eval"),
        "simulate": False,
        "progress": False,
        "batch_size": 4,
    }
    return {"root": root, "overrides": overrides}


@pytest.fixture(scope="module")
def pretrained(env: dict) -> Path:
    """Two epochs of MoCo pretraining through ``monai.bundle.run`` (as the CLI does)."""
    run("pretrain", config_file=PRETRAIN, **env["overrides"], epochs=2, **{"ssl_method#queue_size": 16})
    return Path(env["overrides"]["ckpt_dir"])


@pytest.fixture(scope="module")
def finetuned(env: dict, pretrained: Path) -> dict:
    """Fine-tune 2 epochs from the pretrained checkpoint; keeps the encoder state as loaded."""
    workflow = create_workflow(config_file=FINETUNE, **env["overrides"], epochs=2, run_id="finetune")
    loaded = copy.deepcopy(workflow.parser.get_parsed_content("network").encoder.state_dict())
    workflow.run()
    workflow.finalize()
    return {"loaded": loaded, "ckpt_dir": pretrained}


# ---- configs -------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(CONFIGS.rglob("*.json")), ids=lambda p: str(p.relative_to(CONFIGS)))
def test_every_config_is_json(path: Path) -> None:
    content = json.loads(path.read_text())
    assert isinstance(content, dict) and content
    if path.parent.name in ("methods", "encoders"):
        assert len(path.read_text().splitlines()) <= 20  # overlays stay small


def test_every_registry_entry_has_an_overlay() -> None:
    assert {p.stem for p in (CONFIGS / "methods").glob("*.json")} == set(METHODS)
    assert {p.stem for p in (CONFIGS / "encoders").glob("*.json")} == set(ENCODERS)


def _parser(*files: str, **overrides) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config(list(files))
    parser.update(overrides)
    parser.parse()
    return parser


@pytest.mark.parametrize("method", sorted(METHODS))
def test_method_overlay_composes(method: str) -> None:
    parser = _parser(*PRETRAIN, str(CONFIGS / "methods" / f"{method}.json"), **{"network_def#channels": 8})
    built = parser.get_parsed_content("ssl_method")
    assert isinstance(built, METHODS[method])
    assert isinstance(parser.get_parsed_content("network").method, METHODS[method])


@pytest.mark.parametrize("method", sorted(METHODS))
def test_method_key_alone_builds_the_method_with_its_defaults(method: str) -> None:
    """``--method <m>`` without the overlay: pretrain.json holds no method-specific argument."""
    parser = _parser(*PRETRAIN, method=method, **{"network_def#channels": 8})
    assert isinstance(parser.get_parsed_content("ssl_method"), METHODS[method])


@pytest.mark.parametrize("encoder", sorted(ENCODERS))
def test_encoder_overlay_composes(encoder: str) -> None:
    parser = _parser(*PRETRAIN, str(CONFIGS / "encoders" / f"{encoder}.json"), box=16)
    net = parser.get_parsed_content("network_def")
    assert type(net) is type(ENCODERS[encoder](**({"img_size": 16} if encoder == "rb3d_original" else {})))
    with torch.no_grad():
        assert net.eval()(torch.zeros(2, 1, 16, 16, 16)).shape == (2, net.num_features)


@pytest.mark.parametrize(
    ("files", "run_id"),
    [
        (["common.json", "pretrain.json", "multi_gpu_pretrain.json"], "pretrain"),
        (["common.json", "finetune.json", "multi_gpu_finetune.json"], "finetune"),
        (["common.json", "finetune.json", "evaluate.json"], "evaluate"),
        (["common.json", "inference.json"], "inference"),
    ],
)
def test_composed_configs_have_their_run_id(files: list[str], run_id: str) -> None:
    parser = ConfigParser()
    parser.read_config(_files(*files))
    assert run_id in parser and "initialize" in parser


# ---- runs ----------------------------------------------------------------------------------------


def test_pretrain_writes_checkpoints_and_tensorboard(env: dict, pretrained: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ckpt = torch.load(pretrained / "pretrain_checkpoint_epoch=2.pt", weights_only=True)
    assert set(ckpt) == {"model", "optimizer", "lr_scheduler", "trainer", "run_info", "rng"}
    assert dict(ckpt["trainer"]) == {"epoch_length": 3, "iteration": 6, "max_epochs": 2}  # 2 epochs done
    assert ckpt["run_info"] == {"task": "pretrain", "encoder": "rb3d", "method": "moco", "encoder_args": {}}
    assert ckpt["model"]["queue"].shape == (16, 128) and any(k.startswith("key_encoder.") for k in ckpt["model"])
    assert int(ckpt["model"]["queue_ptr"]) == (2 * 3 * 4) % 16  # 15 training particles, batch 4: 3 steps/epoch
    final = torch.load(pretrained / "pretrain.pt", weights_only=True)
    assert all(torch.equal(final["model"][k], v) for k, v in ckpt["model"].items())
    events = EventAccumulator(str(Path(env["overrides"]["output_dir"]) / "pretrain"))
    events.Reload()
    assert {"loss", "pos_sim", "train_loss", "lr"} <= set(events.Tags()["scalars"])
    assert "views" in events.Tags()["images"]
    assert len(events.Scalars("train_loss")) == 2


def test_a_batch_larger_than_the_pretraining_split_is_a_config_error(env: dict) -> None:
    """15 training particles, batch 64, drop_last: no batch would be drawn and no checkpoint written."""
    from cryomonai.errors import ConfigError

    out = env["root"] / "too_big_batch"
    overrides = {**env["overrides"], "ckpt_dir": str(out / "models"), "output_dir": str(out / "eval"), "batch_size": 64}
    with pytest.raises(Exception) as info:
        run("pretrain", config_file=PRETRAIN, **overrides, epochs=1)
    err = info.value
    while err is not None and not isinstance(err, ConfigError):  # MONAI wraps a `$` expression's error
        err = err.__cause__ or err.__context__
    assert err is not None and "64 is larger than the 15 subtomograms" in str(err) and "at most 15" in str(err)
    assert not (out / "models" / "pretrain.pt").exists()


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_pretrains_through_the_bundle(env: dict, method: str) -> None:
    out = env["root"] / f"method_{method}"
    overrides = {**env["overrides"], "ckpt_dir": str(out / "models"), "output_dir": str(out / "eval")}
    run("pretrain", config_file=[*PRETRAIN, str(CONFIGS / "methods" / f"{method}.json")], **overrides, epochs=1,
        **{"network_def#channels": 8})
    ckpt = torch.load(out / "models" / "pretrain.pt", weights_only=True)
    assert ckpt["run_info"]["method"] == method and ckpt["trainer"]["iteration"] == 3
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())


def test_finetune_loads_exactly_the_pretrained_encoder(finetuned: dict) -> None:
    ckpt = torch.load(finetuned["ckpt_dir"] / "pretrain.pt", weights_only=True)["model"]
    expected = {k[len("encoder."):]: v for k, v in ckpt.items() if k.startswith("encoder.")}
    assert finetuned["loaded"].keys() == expected.keys()
    assert all(torch.equal(finetuned["loaded"][k], v) for k, v in expected.items())


def test_finetune_writes_the_best_checkpoint(finetuned: dict) -> None:
    best = torch.load(finetuned["ckpt_dir"] / "finetune_best.pt", weights_only=True)
    assert set(best) == {"model", "run_info"}
    assert best["run_info"]["classes"] == list(CLASSES) and best["run_info"]["task"] == "finetune"
    assert best["model"]["head.fc.weight"].shape == (3, 256)
    last = torch.load(finetuned["ckpt_dir"] / "finetune_checkpoint_epoch=2.pt", weights_only=True)
    assert last["trainer"]["iteration"] == 2 * last["trainer"]["epoch_length"]


def test_min_steps_scales_epochs_validation_and_schedule_by_one_whole_factor(env: dict) -> None:
    out = env["root"] / "min_steps"
    overrides = {**env["overrides"], "ckpt_dir": str(out / "models"), "output_dir": str(out / "eval")}
    workflow = create_workflow(config_file=FINETUNE, **overrides, pretrained="", epochs=2, val_interval=1,
                               min_steps=17, run_id="finetune")
    steps = len(workflow.parser.get_parsed_content("train#dataloader"))
    scale = -(-17 // (2 * steps))
    assert scale > 1 and workflow.parser.get_parsed_content("epoch_scale") == scale
    validated: list[int] = []
    workflow.parser.get_parsed_content("validate#evaluator").add_event_handler(
        Events.COMPLETED, lambda _: validated.append(workflow.parser.get_parsed_content("train#trainer").state.epoch))
    workflow.run()
    workflow.finalize()
    state = workflow.parser.get_parsed_content("train#trainer").state
    assert state.max_epochs == 2 * scale and state.iteration == 2 * scale * steps >= 17
    assert validated == [scale, 2 * scale]  # as many validations as 2 epochs at val_interval 1 give
    assert workflow.parser.get_parsed_content("lr_scheduler").T_max == 2 * scale
    default = create_workflow(config_file=FINETUNE, **overrides, pretrained="", epochs=2, run_id="finetune")
    assert default.parser.get_parsed_content("epoch_scale") == 1  # min_steps 0: epochs as set


def test_resume_continues_from_the_saved_epoch_with_the_same_queue(env: dict, pretrained: Path) -> None:
    ckpt_dir = env["root"] / "resume"
    ckpt_dir.mkdir()
    shutil.copy(pretrained / "pretrain_checkpoint_epoch=2.pt", ckpt_dir)
    saved = torch.load(ckpt_dir / "pretrain_checkpoint_epoch=2.pt", weights_only=True)
    overrides = {**env["overrides"], "ckpt_dir": str(ckpt_dir), "output_dir": str(env["root"] / "eval_resume")}
    workflow = create_workflow(config_file=PRETRAIN, **overrides, epochs=3, resume=True, run_id="pretrain",
                               **{"ssl_method#queue_size": 16})
    trainer = workflow.parser.get_parsed_content("train#trainer")
    method = workflow.parser.get_parsed_content("ssl_method")
    seen = {}

    @trainer.on(Events.EPOCH_STARTED)
    def _probe(engine) -> None:  # the first epoch after the checkpoint was loaded (at STARTED)
        if not seen:
            seen.update(epoch=engine.state.epoch, iteration=engine.state.iteration,
                        queue=method.queue.clone(), ptr=int(method.queue_ptr))

    workflow.run()
    workflow.finalize()
    assert seen["epoch"] == 3 and seen["iteration"] == saved["trainer"]["iteration"]
    assert torch.equal(seen["queue"], saved["model"]["queue"]) and seen["ptr"] == int(saved["model"]["queue_ptr"])
    assert trainer.state.epoch == 3
    assert (ckpt_dir / "pretrain_checkpoint_epoch=3.pt").is_file()


def test_evaluate_writes_accuracy_and_predictions(env: dict, finetuned: dict) -> None:
    run("evaluate", config_file=_files("common.json", "finetune.json", "evaluate.json"), **env["overrides"])
    out = Path(env["overrides"]["output_dir"])
    metrics = pd.read_csv(out / "metrics.csv", header=None, index_col=0).iloc[:, 0]
    assert 0.0 <= metrics["accuracy"] <= 1.0
    predictions = pd.read_csv(out / "predictions_test.csv", keep_default_na=False)
    table = pd.read_csv(Path(env["overrides"]["dataset_dir"]) / "particles.csv", keep_default_na=False)
    assert len(predictions) == (table["split"] == "test").sum() > 0
    assert abs((predictions["label"] == predictions["prediction"]).mean() - metrics["accuracy"]) < 1e-6


def test_inference_writes_predictions_for_the_table(env: dict, finetuned: dict) -> None:
    run("inference", config_file=_files("common.json", "inference.json"), **env["overrides"])
    out = Path(env["overrides"]["output_dir"])
    predictions = pd.read_csv(out / "predictions.csv", keep_default_na=False)
    assert len(predictions) == 24 and set(predictions["cryoPredictedClassName"]) <= set(CLASSES)
    assert (out / "predictions.star").is_file() and (out / "embeddings.npy").is_file()


# ---- fine-tuning augmentation --------------------------------------------------------------------


def _is_random(transform) -> bool:
    return any(isinstance(t, Randomizable) for t in getattr(transform, "transforms", [transform]))


def test_finetune_augments_by_default_and_augment_false_only_normalises() -> None:
    default = _parser(*FINETUNE)
    assert default.get_parsed_content("augment") is True and default.get_parsed_content("augment_on_device") is False
    views = default.get_parsed_content("train#transforms")
    assert isinstance(views, ViewPipeline) and _is_random(views)
    assert (views.options["rotation"], views.options["shift_voxels"], tuple(views.options["tilt_range"])) == (
        "so3", 1.0, (-60.0, 60.0))
    assert default.get_parsed_content("train#loader_transforms") is views  # made per sample in the loader
    assert default.get_parsed_content("train#prepare_batch").views is None
    off = _parser(*FINETUNE, augment=False)
    plain = off.get_parsed_content("train#transforms")
    assert not isinstance(plain, ViewPipeline) and not _is_random(plain)
    assert off.get_parsed_content("train#prepare_batch").views is None
    knobs = _parser(*FINETUNE, **{"train#views#rotation": "beam", "train#views#pixel_size_nm": 2.0,
                                  "train#views#noise_prob": 0.5})
    twin = knobs.get_parsed_content("train#transforms").batched()
    assert (twin.rotation, twin.microscope["pixel_size_nm"], twin.noise_prob) == ("beam", 2.0, 0.5)
    on = _parser(*FINETUNE, augment_on_device=True)
    assert isinstance(on.get_parsed_content("train#prepare_batch").views, BatchedViews)
    assert not _is_random(on.get_parsed_content("train#loader_transforms"))  # the loader only normalises


def test_evaluation_and_inference_never_augment() -> None:
    evaluate = _parser(*_files("common.json", "finetune.json", "evaluate.json"), augment_on_device=True)
    assert evaluate.get_parsed_content("augment") is False
    assert not _is_random(evaluate.get_parsed_content("train#transforms"))
    assert evaluate.get_parsed_content("train#prepare_batch").views is None
    for parser in (evaluate, _parser(*FINETUNE)):
        assert not _is_random(parser.get_parsed_content("validate#transforms"))
        assert parser["validate"]["evaluator"]["prepare_batch"] == "@prepare_batch"  # not the training one
        assert type(parser.get_parsed_content("prepare_batch")) is PrepareBatchMemoryFormat
    inference = _parser(*_files("common.json", "inference.json"))
    assert not _is_random(inference.get_parsed_content("preprocessing"))


def _first_training_batch(env: dict, name: str, **overrides) -> tuple[dict, dict]:
    """One epoch of fine-tuning from random weights: the loader's first batch and what the network got."""
    out = env["root"] / f"augment_{name}"
    paths = {"ckpt_dir": str(out / "models"), "output_dir": str(out / "eval")}
    workflow = create_workflow(config_file=FINETUNE, **{**env["overrides"], **paths}, epochs=1, pretrained="",
                               run_id="finetune", **{"network_def#channels": 8}, **overrides)
    trainer = workflow.parser.get_parsed_content("train#trainer")
    seen: list[tuple[dict, dict]] = []

    @trainer.on(Events.ITERATION_COMPLETED(once=1))
    def _keep(engine) -> None:
        seen.append((dict(engine.state.batch), dict(engine.state.output)))

    workflow.run()
    workflow.finalize()
    return seen[0]


def test_finetune_trains_on_augmented_views_per_sample_or_on_the_device(env: dict) -> None:
    off_batch, off = _first_training_batch(env, "off", augment=False)
    on_batch, on = _first_training_batch(env, "on")
    device_batch, device = _first_training_batch(env, "device", augment_on_device=True)
    for batch, output in ((on_batch, on), (device_batch, device)):
        assert torch.equal(batch["label"], off_batch["label"]) and torch.equal(output["label"], off["label"])
        assert output["image"].shape == off["image"].shape == (4, 1, 24, 24, 24)
        assert not torch.allclose(output["image"], off["image"], atol=0.1)  # the network saw other volumes
    assert torch.equal(off["image"], torch.as_tensor(off_batch["image"]))  # augment false: as loaded (normalised; plain tensors: track_meta false)
    assert torch.equal(on["image"], torch.as_tensor(on_batch["image"]))  # made by the loader
    assert torch.equal(device_batch["image"], off_batch["image"])  # the loader only normalised ...
    assert not torch.allclose(device["image"], torch.as_tensor(device_batch["image"]), atol=0.1)  # ... the device augmented


def _one_epoch(env: dict, name: str, **overrides) -> tuple[dict, dict[str, torch.Tensor]]:
    """One epoch of augmented fine-tuning from random weights: the first batch and the trained weights."""
    out = env["root"] / f"meta_{name}"
    paths = {"ckpt_dir": str(out / "models"), "output_dir": str(out / "eval")}
    workflow = create_workflow(config_file=FINETUNE, **{**env["overrides"], **paths}, epochs=1, pretrained="",
                               run_id="finetune", **{"network_def#channels": 8}, **overrides)
    seen: list[dict] = []
    workflow.parser.get_parsed_content("train#trainer").add_event_handler(
        Events.ITERATION_COMPLETED(once=1), lambda engine: seen.append(dict(engine.state.batch)))
    workflow.run()
    weights = {k: v.clone() for k, v in workflow.parser.get_parsed_content("classifier").state_dict().items()}
    workflow.finalize()
    return seen[0], weights


def test_finetune_loader_hands_plain_tensors_and_trains_exactly_as_with_metadata(env: dict) -> None:
    """``track_meta`` false (the default since 0.7.1) only drops MONAI's metadata from the training
    batches: same volumes, same random draws, bit-identical weights after an epoch."""
    assert _parser(*FINETUNE).get_parsed_content("track_meta") is False
    plain_batch, plain = _one_epoch(env, "off")
    meta_batch, meta = _one_epoch(env, "on", track_meta=True)
    assert type(plain_batch["image"]) is torch.Tensor and type(meta_batch["image"]).__name__ == "MetaTensor"
    assert torch.equal(plain_batch["image"], meta_batch["image"].as_tensor())
    assert plain.keys() == meta.keys() and all(torch.equal(plain[k], meta[k]) for k in plain)


def test_finetune_refuses_a_checkpoint_of_another_encoder(env: dict, pretrained: Path) -> None:
    workflow = create_workflow(config_file=FINETUNE, **env["overrides"], encoder="resnet10", run_id="finetune")
    with pytest.raises(RuntimeError) as info:
        workflow.parser.get_parsed_content("network")
    assert "encoder 'rb3d' but this run builds 'resnet10'" in str(info.value.__cause__)


def test_a_network_set_once_is_rebuilt_from_its_checkpoints(env: dict, tmp_path: Path) -> None:
    """``--network_def#channels 8`` given to pretraining only: fine-tuning, evaluation, inference and ``embed`` build
    the 8-channel encoder from the checkpoint they start from (its run info's ``encoder_args``)."""
    keys = {**env["overrides"], "ckpt_dir": str(tmp_path / "models"), "output_dir": str(tmp_path / "eval")}
    run("pretrain", config_file=PRETRAIN, **keys, epochs=1, **{"ssl_method#queue_size": 16, "network_def#channels": 8})
    run("finetune", config_file=FINETUNE, **keys, epochs=1)
    best = torch.load(tmp_path / "models" / "finetune_best.pt", weights_only=True)
    assert best["run_info"]["encoder_args"] == {"channels": 8} and next(v for k, v in best["model"].items() if v.ndim == 5).shape[0] == 8
    run("evaluate", config_file=_files("common.json", "finetune.json", "evaluate.json"), **keys)
    run("inference", config_file=_files("common.json", "inference.json"), **keys)
    assert np.load(tmp_path / "eval" / "embeddings.npy").shape == (24, 8 * 8)  # adaptive pool to 2^3 x 8 channels
    run("embed", config_file=_files("common.json", "inference.json", "embed.json"),
        **{**keys, "output_dir": str(tmp_path / "emb")}, n_clusters=2)
    assert np.load(tmp_path / "emb" / "embeddings.npy").shape == (24, 64)
    # a width given in the run's config wins over the checkpoint's: 16 channels do not fit its weights
    with pytest.raises(RuntimeError):
        run("evaluate", config_file=_files("common.json", "finetune.json", "evaluate.json"), **keys,
            **{"network_def#channels": 16})


def _cli_env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


@pytest.mark.slow
def test_cli_command_from_the_readme(env: dict, pretrained: Path) -> None:
    """The documented command, with the tmp dataset and one epoch."""
    o = env["overrides"]
    cmd = [sys.executable, "-m", "monai.bundle", "run", "pretrain", "--config_file",
           "['bundles/cryo_ssl/configs/common.json','bundles/cryo_ssl/configs/pretrain.json']",
           "--bundle_root", "bundles/cryo_ssl", "--dataset_dir", o["dataset_dir"], "--ckpt_dir",
           str(env["root"] / "cli"), "--output_dir", str(env["root"] / "cli_eval"), "--epochs", "1",
           "--batch_size", "4", "--progress", "False", "--simulate", "False"]
    done = subprocess.run(cmd, cwd=REPO, env=_cli_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (env["root"] / "cli" / "pretrain.pt").is_file()


@pytest.mark.slow
def test_multi_gpu_pretrain_with_two_gloo_processes_on_cpu(env: dict, pretrained: Path) -> None:
    o = env["overrides"]
    files = "['bundles/cryo_ssl/configs/common.json','bundles/cryo_ssl/configs/pretrain.json'," \
            "'bundles/cryo_ssl/configs/multi_gpu_pretrain.json']"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
           "monai.bundle", "run", "pretrain", "--config_file", files, "--bundle_root", "bundles/cryo_ssl",
           "--dataset_dir", o["dataset_dir"], "--ckpt_dir", str(env["root"] / "ddp"), "--output_dir",
           str(env["root"] / "ddp_eval"), "--epochs", "2", "--batch_size", "2", "--progress", "False",
           "--simulate", "False", "--ssl_method#queue_size", "12"]
    done = subprocess.run(cmd, cwd=REPO, env=_cli_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    ckpt = torch.load(env["root"] / "ddp" / "pretrain_checkpoint_epoch=2.pt", weights_only=True)
    # 15 training particles padded to 16 over 2 ranks, batch 2, drop_last: 4 steps per epoch on each rank
    assert ckpt["trainer"]["epoch_length"] == 4 and ckpt["trainer"]["iteration"] == 8
    # the keys of both ranks are enqueued: 8 steps × 2 ranks × 2 keys, queue of 12
    assert int(ckpt["model"]["queue_ptr"]) == (8 * 2 * 2) % 12
