"""Fine-tuning recipes that keep pretrained features: layer-wise lr decay and LP-FT (``lp_epochs``).

The bundle's defaults train bit-identically to the recipe before these keys existed; LP-FT keeps the
encoder (weights and BatchNorm statistics) exactly during the probe and fine-tunes it after; layer
decay gives each block of a real encoder its rate; the schedule is the cosine, after the probe.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from ignite.engine import Events
from monai.bundle import ConfigParser
from monai.bundle.scripts import create_workflow
from torch import nn

from cryomonai.engines import (
    LinearProbeFirst,
    check_layer_decay,
    encoder_blocks,
    finetune_lr_scheduler,
    finetune_param_groups,
)
from cryomonai.errors import ConfigError
from cryomonai.networks import ENCODERS, Classifier, build_encoder

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "bundles" / "cryo_ssl"
FINETUNE = [str(BUNDLE / "configs" / name) for name in ("common.json", "finetune.json")]
#: the recipe as it was before ``lp_epochs``/``layer_decay`` (commit 4404b51), as overrides
OLD_RECIPE = {
    "train_epochs": "$@epochs * @epoch_scale",
    "optimizer#params": "$[{'params': list(@classifier.encoder.parameters()), 'lr': @encoder_lr}, "
                        "{'params': list(@classifier.head.parameters())}]",
    "lr_scheduler": {"_target_": "torch.optim.lr_scheduler.CosineAnnealingLR", "optimizer": "@optimizer",
                     "T_max": "@train_epochs"},
    "train#handlers": [
        {"_target_": "LrScheduleHandler", "lr_scheduler": "@lr_scheduler", "print_lr": False},
        {"_target_": "ValidationHandler", "validator": "@validate#evaluator", "epoch_level": True,
         "interval": "$@val_interval * @epoch_scale"},
    ],
}
#: a preset's own optimizer: Adam with the two-group expression (the grid presets' before ``finetune_param_groups``)
PRESET_OPTIMIZER = {"_target_": "torch.optim.Adam", "lr": "@lr", "weight_decay": "@weight_decay",
                    "params": OLD_RECIPE["optimizer#params"]}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tiny simulated dataset (3 classes × 8, 16³) and overrides: rb3d with BatchNorm, 8 channels."""
    from cryomonai.simulate.dataset import simulate_dataset

    root = tmp_path_factory.mktemp("recipes")
    simulate_dataset(root / "data", n_per_class=8, box=16, classes=("1bxn", "1qvr", "1s3x"), seed=0, workers=0,
                     progress=False)
    overrides = {"bundle_root": str(BUNDLE), "dataset_dir": str(root / "data"), "simulate": False, "progress": False,
                 "batch_size": 4, "pretrained": "", "encoder": "rb3d_bn", "network_def#channels": 8,
                 "save_interval": 100}
    return {"root": root, "overrides": overrides}


def _workflow(env: dict, name: str, **overrides):
    out = env["root"] / name
    return create_workflow(config_file=FINETUNE, run_id="finetune", ckpt_dir=str(out / "models"),
                           output_dir=str(out / "eval"), **{**env["overrides"], **overrides})


def _state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _train(env: dict, name: str, **overrides) -> dict[str, torch.Tensor]:
    workflow = _workflow(env, name, **overrides)
    workflow.run()
    weights = _state(workflow.parser.get_parsed_content("classifier"))
    workflow.finalize()
    return weights


# ---- the defaults are the old recipe -------------------------------------------------------------


@pytest.mark.parametrize("optimizer", [None, PRESET_OPTIMIZER], ids=["sgd", "preset_adam"])
def test_default_keys_train_bit_identically_to_the_recipe_without_them(env: dict, optimizer: dict | None) -> None:
    extra = {} if optimizer is None else {"optimizer": optimizer}
    new = _train(env, f"new_{bool(optimizer)}", epochs=2, **extra)
    old = _train(env, f"old_{bool(optimizer)}", epochs=2, **{**OLD_RECIPE, **extra})
    assert _equal(new, old)


def test_the_grid_presets_optimizer_trains_bit_identically_to_the_two_group_expression(env: dict) -> None:
    """Every grid preset that sets its optimizer builds the groups with ``finetune_param_groups`` (so
    ``layer_decay`` reaches it); at ``layer_decay`` 1 that trains as the old two-group expression did."""
    import json

    from cryomonai.experiment.preset import preset_dir

    def optimizers(node: object) -> list[dict]:  # every "optimizer" a preset sets (in finetune or in a recipe)
        if not isinstance(node, dict):
            return []
        return [v for k, v in node.items() if k == "optimizer"] + [o for v in node.values() for o in optimizers(v)]

    found = {p.stem: optimizers(json.loads(p.read_text())) for p in preset_dir().glob("*.json")}
    assert all("finetune_param_groups(" in o["params"] for os_ in found.values() for o in os_), found
    new = _train(env, "preset_groups", epochs=2, optimizer=found["cpu"][0])
    old = _train(env, "preset_two_groups", epochs=2, optimizer=PRESET_OPTIMIZER)
    assert _equal(new, old)


# ---- LP-FT ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("optimizer", [None, PRESET_OPTIMIZER], ids=["sgd", "preset_adam"])
def test_lp_ft_keeps_encoder_and_bn_statistics_during_the_probe_then_trains_it(env: dict, optimizer: dict | None) -> None:
    extra = {} if optimizer is None else {"optimizer": optimizer}  # LP-FT works with a preset's own optimizer
    workflow = _workflow(env, f"lpft_{bool(optimizer)}", epochs=2, lp_epochs=2, lr=0.01, **extra)
    classifier = workflow.parser.get_parsed_content("classifier")
    trainer = workflow.parser.get_parsed_content("train#trainer")
    optimizer = workflow.parser.get_parsed_content("optimizer")
    encoder0, head0 = _state(classifier.encoder), _state(classifier.head)
    assert any("running_mean" in k for k in encoder0)  # rb3d_bn: BatchNorm statistics to keep
    seen: dict[int, tuple] = {}
    lrs: dict[int, list[float]] = {}
    trainer.add_event_handler(Events.EPOCH_STARTED,
                              lambda e: lrs.setdefault(e.state.epoch, [g["lr"] for g in optimizer.param_groups]))
    encoder_ids = {id(p) for p in classifier.encoder.parameters()}

    @trainer.on(Events.EPOCH_COMPLETED)
    def _keep(engine) -> None:
        seen[engine.state.epoch] = (_state(classifier.encoder), _state(classifier.head),
                                    any(id(p) in encoder_ids for p in optimizer.state))

    workflow.run()
    workflow.finalize()
    assert trainer.state.max_epochs == 4 and workflow.parser.get_parsed_content("lp_train_epochs") == 2
    for epoch in (1, 2):  # the probe: encoder weights and BN statistics exactly as loaded, no optimizer state
        encoder, head, encoder_state = seen[epoch]
        assert _equal(encoder, encoder0) and not encoder_state
        assert not torch.equal(head["fc.weight"], head0["fc.weight"])
    assert not torch.equal(seen[2][1]["fc.weight"], seen[1][1]["fc.weight"])  # the head trains in both probe epochs
    encoder3 = seen[3][0]
    stats = [k for k in encoder0 if "running_" in k]
    weights = [k for k in encoder0 if k.endswith("weight")]
    assert all(not torch.equal(encoder3[k], encoder0[k]) for k in stats)  # fine-tuning: BN statistics move ...
    assert all(not torch.equal(encoder3[k], encoder0[k]) for k in weights)  # ... and every weight
    assert seen[3][2]  # the optimizer now has state for encoder parameters
    # constant rates during the probe, then the cosine over the 2 fine-tuning epochs from the base rates
    assert lrs[1] == lrs[2] == lrs[3] == [0.01, 0.01]
    assert lrs[4] == pytest.approx([0.005, 0.005])


def test_lp_epochs_scale_with_min_steps_and_the_fine_tuning_phase_gets_them(env: dict) -> None:
    workflow = _workflow(env, "lp_scale", epochs=2, lp_epochs=1, min_steps=17)
    steps = len(workflow.parser.get_parsed_content("train#dataloader"))
    scale = workflow.parser.get_parsed_content("epoch_scale")
    assert scale == -(-17 // (2 * steps)) > 1  # from `epochs` alone: the probe does not count
    assert workflow.parser.get_parsed_content("lp_train_epochs") == scale
    assert workflow.parser.get_parsed_content("train_epochs") == 3 * scale
    sched = workflow.parser.get_parsed_content("lr_scheduler")
    assert sched.lr_lambdas[0].lp_epochs == scale and sched.lr_lambdas[0].ft_epochs == 2 * scale
    assert 2 * scale * steps >= 17


def test_linear_probe_first_follows_the_epoch_and_respects_a_frozen_classifier() -> None:
    net = Classifier(build_encoder("rb3d_bn", channels=8), num_classes=3)
    handler = LinearProbeFirst(net, epochs=2)
    engine = type("E", (), {"state": type("S", (), {"epoch": 2})()})()
    handler(engine)
    net.train()
    assert net.freeze_encoder and not net.encoder.training
    assert not any(p.requires_grad for p in net.encoder.parameters())
    engine.state.epoch = 3  # also what a run resumed at epoch 3 sees first
    handler(engine)
    net.train()
    assert not net.freeze_encoder and net.encoder.training and all(p.requires_grad for p in net.encoder.parameters())
    probe = Classifier(build_encoder("rb3d", channels=8), num_classes=3, freeze_encoder=True)
    LinearProbeFirst(probe, epochs=2)(engine)
    assert probe.freeze_encoder and not any(p.requires_grad for p in probe.encoder.parameters())


# ---- layer-wise decay ----------------------------------------------------------------------------


BLOCKS = {
    "rb3d": ["features.conv0"] + [f"features.block{i}" for i in range(1, 5)],
    "rb3d_original": ["features.conv0"] + [f"features.block{i}" for i in range(1, 5)] + ["fc.fc1", "fc.fc2"],
    "resnet10": ["conv1", "layer1.0", "layer2.0", "layer3.0", "layer4.0"],
    "densenet121": ["features.conv0", "features.denseblock1", "features.transition1", "features.denseblock2",
                    "features.transition2", "features.denseblock3", "features.transition3", "features.denseblock4"],
}
BLOCKS["rb3d_bn"] = BLOCKS["rb3d"]


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_encoder_blocks_partition_every_encoder_stem_first(name: str) -> None:
    encoder = build_encoder(name, **({"img_size": 16} if name == "rb3d_original" else {}))
    blocks = encoder_blocks(encoder)
    ids = [id(p) for _, params in blocks for p in params]
    assert len(ids) == len(set(ids)) == len(list(encoder.parameters()))  # every parameter in exactly one block
    assert [n for n, _ in blocks] == BLOCKS[name]
    for norm in (m for m in encoder.modules() if isinstance(m, nn.modules.batchnorm._NormBase)):
        owner = [n for n, params in blocks if any(p is norm.weight for p in params)]
        assert len(owner) == 1  # a norm layer trains at the rate of the block it belongs to


def test_layer_decay_gives_each_block_of_a_real_encoder_its_rate() -> None:
    net = Classifier(build_encoder("resnet10"), num_classes=3)
    groups = finetune_param_groups(net, encoder_lr=1e-3, layer_decay=0.5)
    names = [n for n, _ in encoder_blocks(net.encoder)]
    assert names == ["conv1", "layer1.0", "layer2.0", "layer3.0", "layer4.0"]
    assert [g["lr"] for g in groups[:-1]] == pytest.approx([1e-3 * 0.5**4, 1e-3 * 0.5**3, 1e-3 * 0.25, 5e-4, 1e-3])
    assert "lr" not in groups[-1] and groups[-1]["params"] == list(net.head.parameters())
    bn1 = {id(p) for p in net.encoder.bn1.parameters()}
    assert bn1 <= {id(p) for p in groups[0]["params"]}  # the stem's norm trains with the stem conv
    two = finetune_param_groups(net, encoder_lr=1e-3)
    assert len(two) == 2 and two[0]["lr"] == 1e-3 and two[0]["params"] == list(net.encoder.parameters())
    with pytest.raises(ConfigError, match="layer_decay"):
        finetune_param_groups(net, 1e-3, layer_decay=1.5)


def test_layer_decay_in_the_bundle_and_its_schedule(env: dict) -> None:
    workflow = _workflow(env, "decay", epochs=3, lr=0.01, encoder_lr=0.001, layer_decay=0.5)
    optimizer = workflow.parser.get_parsed_content("optimizer")
    base = [0.001 * 0.5**4, 0.001 * 0.5**3, 0.001 * 0.25, 0.0005, 0.001, 0.01]
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx(base)
    sched = workflow.parser.get_parsed_content("lr_scheduler")
    for epoch in range(1, 3):
        optimizer.step()
        sched.step()
        factor = 0.5 * (1 + math.cos(math.pi * epoch / 3))
        assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([b * factor for b in base])


def test_a_preset_optimizer_that_ignores_layer_decay_is_refused(env: dict) -> None:
    parser = ConfigParser()
    parser.read_config(FINETUNE)
    parser.update({**env["overrides"], "optimizer": PRESET_OPTIMIZER, "layer_decay": 0.7})
    args = [parser.get_parsed_content(k) for k in ("optimizer", "classifier", "encoder_lr", "layer_decay")]
    with pytest.raises(ConfigError, match="finetune_param_groups"):
        check_layer_decay(*args)
    check_layer_decay(args[0], args[1], args[2], 1.0)  # layer_decay 1: the preset's two groups are right
    parser["optimizer"]["params"] = "$cryomonai.engines.finetune_param_groups(@classifier, @encoder_lr, @layer_decay)"
    parser.parse()
    check_layer_decay(*[parser.get_parsed_content(k) for k in ("optimizer", "classifier", "encoder_lr", "layer_decay")])


# ---- the schedule --------------------------------------------------------------------------------


def test_finetune_lr_scheduler_is_the_cosine_without_a_probe_and_after_it() -> None:
    def optimizer() -> torch.optim.Optimizer:
        return torch.optim.SGD([{"params": [nn.Parameter(torch.zeros(1))], "lr": 0.1},
                                {"params": [nn.Parameter(torch.zeros(1))]}], lr=1.0)

    plain = finetune_lr_scheduler(optimizer(), 5)
    assert type(plain) is torch.optim.lr_scheduler.CosineAnnealingLR and plain.T_max == 5
    opt = optimizer()
    sched = finetune_lr_scheduler(opt, 7, lp_epochs=3)
    per_epoch = []
    for _ in range(7):
        per_epoch += [g["lr"] for g in opt.param_groups]
        opt.step()
        sched.step()
    cosine = [0.5 * (1 + math.cos(math.pi * t / 4)) for t in range(4)]
    assert per_epoch == pytest.approx([0.1, 1.0] * 3 + [x for c in cosine for x in (0.1 * c, c)])
    resumed = finetune_lr_scheduler(optimizer(), 7, lp_epochs=3)
    resumed.load_state_dict(sched.state_dict())
    assert resumed.last_epoch == 7 and resumed.lr_lambdas[0].ft_epochs == 4
    for bad in (-1, 7):
        with pytest.raises(ConfigError, match="lp_epochs"):
            finetune_lr_scheduler(optimizer(), 7, lp_epochs=bad)


# ---- DDP -----------------------------------------------------------------------------------------


def test_lp_ft_under_ddp_with_two_gloo_processes(env: dict) -> None:
    """``multi_gpu_finetune.json``: the probe epoch leaves the loaded encoder (weights and BN statistics)
    exactly as it was on both ranks (DDP finds the frozen parameters unused), the next epoch trains it."""
    import os
    import subprocess
    import sys

    root = env["root"] / "ddp"
    root.mkdir()
    net = Classifier(build_encoder("rb3d_bn", channels=8), num_classes=3)
    torch.save({"model": net.state_dict(), "run_info": {"encoder": "rb3d_bn"}}, root / "start.pt")
    configs = "[" + ",".join(f"'bundles/cryo_ssl/configs/{f}'" for f in
                             ("common.json", "finetune.json", "multi_gpu_finetune.json")) + "]"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "monai.bundle",
           "run", "finetune", "--config_file", configs, "--bundle_root", "bundles/cryo_ssl",
           "--dataset_dir", env["overrides"]["dataset_dir"], "--ckpt_dir", str(root / "models"),
           "--output_dir", str(root / "eval"), "--epochs", "1", "--lp_epochs", "1", "--layer_decay", "0.7",
           "--batch_size", "2", "--progress", "False", "--simulate", "False", "--encoder", "rb3d_bn",
           "--network_def#channels", "8", "--pretrained", str(root / "start.pt"),
           "--train#checkpoint_saver#n_saved", "2"]
    done = subprocess.run(cmd, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    start = {k: v for k, v in net.state_dict().items() if k.startswith("encoder.")}
    epoch = [torch.load(root / "models" / f"finetune_checkpoint_epoch={e}.pt", weights_only=True)["model"]
             for e in (1, 2)]
    assert all(torch.equal(epoch[0][k], v) for k, v in start.items())
    assert not torch.equal(epoch[1]["encoder.features.conv0.weight"], start["encoder.features.conv0.weight"])
    stat = "encoder.features.norm0.running_mean"
    assert not torch.equal(epoch[1][stat], start[stat])
    assert not torch.equal(epoch[0]["head.fc.weight"], net.state_dict()["head.fc.weight"])


# ---- LP-FT with the readouts' probe as LP (lp_probe) ---------------------------------------------


def test_probe_as_linear_is_the_probes_decision_function() -> None:
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from cryomonai.engines import probe_as_linear

    rng = np.random.default_rng(0)
    x = rng.normal(size=(90, 5)) * rng.uniform(0.5, 4, 5) + rng.normal(size=5) * 3
    for y, classes in ((np.arange(90) % 3, 3), (np.arange(90) % 2, 2), (np.arange(90) % 3 * 2, 6)):
        scaler = StandardScaler().fit(x)
        probe = LogisticRegression().fit(scaler.transform(x), y)
        w, b = probe_as_linear(scaler, probe, classes)
        logits = x @ w.T + b
        assert w.shape == (classes, 5)
        np.testing.assert_array_equal(logits.argmax(1), probe.predict(scaler.transform(x)))
        seen = np.exp(logits[:, probe.classes_] - logits.max(1, keepdims=True))  # softmax over the probe's classes
        np.testing.assert_allclose(seen / seen.sum(1, keepdims=True), probe.predict_proba(scaler.transform(x)),
                                   atol=1e-9)
        unseen = sorted(set(range(classes)) - set(probe.classes_))  # 6 classes, labels 0, 2, 4 only
        assert all((w[unseen] == 0).all() and (b[unseen] < b[probe.classes_].min() - 9))


def test_lp_probe_starts_fine_tuning_at_the_readouts_probe_and_validates_it(env: dict) -> None:
    import numpy as np

    from cryomonai.data import VolumeStackDataset
    from cryomonai.evaluation.probes import probe_accuracies
    from cryomonai.transforms import eval_transform

    workflow = _workflow(env, "lp_probe", epochs=2, lp_probe=True, val_interval=2, lr=0.01)
    classifier = workflow.parser.get_parsed_content("classifier")
    trainer = workflow.parser.get_parsed_content("train#trainer")
    validator = workflow.parser.get_parsed_content("validate#evaluator")
    table = workflow.parser.get_parsed_content("data#table")
    labelled = workflow.parser.get_parsed_content("train#labelled")
    head0 = _state(classifier.head)
    seen: dict[str, object] = {}
    validator.add_event_handler(Events.COMPLETED, lambda e: seen.setdefault("val", []).append(
        (trainer.state.iteration, e.state.metrics["val_accuracy"])))

    @trainer.on(Events.ITERATION_STARTED(once=1))
    def _start(engine) -> None:  # after ProbeStart (attached earlier): the head and the features it saw
        seen["head"] = _state(classifier.head)
        encoder = classifier.encoder.eval()
        ds = VolumeStackDataset(table, workflow.parser.get_parsed_content("cache_path"), transform=eval_transform(),
                                progress=False)
        with torch.no_grad():
            seen["features"] = torch.cat([encoder(ds[i]["image"].as_tensor()[None]) for i in range(len(ds))]).numpy()

    workflow.run()
    best = workflow.parser.get_parsed_content("run_files#finetune_best")
    workflow.finalize()
    assert not torch.equal(seen["head"]["fc.weight"], head0["fc.weight"])  # the head was set before the first step
    rows = np.array([int(labelled.dataset.data[i]["index"]) for i in labelled.indices])
    probe_val = probe_accuracies(seen["features"], table, rows)["val"]
    (it0, start_val), *later = seen["val"]
    assert it0 == 1 and len(later) == 1  # validated at the start, then at epoch 2 (val_interval 2)
    assert start_val == pytest.approx(probe_val)  # the start is the readouts' probe
    assert max(start_val, later[0][1]) >= probe_val  # the best checkpoint is never below it
    assert (env["root"] / "lp_probe" / "models" / Path(best).name).is_file()


def test_lp_probe_leaves_a_resumed_run_and_a_disabled_one_alone() -> None:
    from ignite.engine import Engine

    from cryomonai.engines import ProbeStart

    calls: list[int] = []

    class Counting(ProbeStart):
        def __call__(self, engine) -> None:
            calls.append(engine.state.iteration)

    def engine() -> Engine:
        return Engine(lambda e, b: None)

    fresh = engine()
    Counting(None, None, None, "", fit=None, enabled=True).attach(fresh)
    fresh.run(range(3), max_epochs=2)
    assert calls == [1]
    resumed = engine()
    Counting(None, None, None, "", fit=None, enabled=True).attach(resumed)
    resumed.load_state_dict({"iteration": 3, "epoch_length": 3, "max_epochs": 2})
    resumed.run(range(3))
    disabled = engine()
    Counting(None, None, None, "", fit=None, enabled=False).attach(disabled)
    disabled.run(range(3), max_epochs=1)
    assert calls == [1]
