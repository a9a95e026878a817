"""Precise BN (the bundle's ``precise_bn``): batch-norm statistics recomputed on the labelled training
volumes, un-augmented, before each validation pass; training itself untouched."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from monai.bundle.scripts import create_workflow
from torch import nn
from torch.utils.data import Subset

from cryomonai.data import VolumeStackDataset, label_fraction_subset
from cryomonai.data.dataset import read_particle_table
from cryomonai.engines import PreciseBN, has_batch_norm
from cryomonai.networks import Classifier, build_encoder
from cryomonai.transforms import eval_transform

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "bundles" / "cryo_ssl"
FINETUNE = [str(BUNDLE / "configs" / name) for name in ("common.json", "finetune.json")]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tiny simulated dataset (3 classes × 8, 16³), its volume cache, and bundle overrides (rb3d_bn, 8 channels)."""
    from cryomonai.data import build_volume_cache
    from cryomonai.simulate.dataset import simulate_dataset

    root = tmp_path_factory.mktemp("precise_bn")
    star = simulate_dataset(root / "data", n_per_class=8, box=16, classes=("1bxn", "1qvr", "1s3x"), seed=0, workers=0,
                            progress=False)
    table = read_particle_table(star)
    cache = root / "cache.npy"
    build_volume_cache(table, cache, progress=False)
    overrides = {"bundle_root": str(BUNDLE), "dataset_dir": str(root / "data"), "simulate": False, "progress": False,
                 "batch_size": 4, "pretrained": "", "encoder": "rb3d_bn", "network_def#channels": 8,
                 "save_interval": 100, "val_interval": 1, "lr": 0.01}
    return {"root": root, "table": table, "cache": cache, "overrides": overrides}


def _net(seed: int = 0) -> Classifier:
    torch.manual_seed(seed)
    return Classifier(build_encoder("rb3d_bn", channels=8), 3)


def _labelled(env: dict, fraction: float = 0.5) -> Subset:
    train = VolumeStackDataset(env["table"], env["cache"], split="train", progress=False)
    return label_fraction_subset(train, fraction, 0, 3)


def _bn_buffers(net: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in net.state_dict().items() if "running_" in k}


def _by_hand(net: nn.Module, volumes: torch.Tensor, batch_size: int) -> dict[str, torch.Tensor]:
    """Batch norm's cumulative average over the batches, computed here with every BN layer's own batch statistics."""
    import copy

    ref = copy.deepcopy(net)
    for m in ref.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None
    ref.train()
    with torch.no_grad():
        for i in range(0, len(volumes), batch_size):
            ref(volumes[i:i + batch_size])
    return _bn_buffers(ref)


def test_statistics_are_those_of_the_labelled_volumes_unaugmented(env: dict) -> None:
    net = _net()
    net.eval()
    for m in net.modules():  # statistics as wrong as a fast-moving average leaves them
        if isinstance(m, nn.BatchNorm3d):
            m.running_mean.fill_(5.0)
            m.running_var.fill_(0.01)
    weights = {k: v.clone() for k, v in net.state_dict().items() if "running_" not in k and "num_batches" not in k}
    labelled = _labelled(env)
    rng = torch.get_rng_state()
    PreciseBN(net, env["table"], labelled, env["cache"], batch_size=4).recompute()
    assert torch.equal(torch.get_rng_state(), rng)  # the training stream does not move
    assert not net.training and not any(m.training for m in net.modules())  # modes as they were
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in weights.items())  # weights untouched
    train = VolumeStackDataset(env["table"], env["cache"], split="train", transform=eval_transform(), progress=False)
    volumes = torch.stack([torch.as_tensor(train[int(i)]["image"]) for i in labelled.indices])
    expected = _by_hand(net, volumes, 4)
    got = _bn_buffers(net)
    assert got.keys() == expected.keys()
    for k in expected:
        torch.testing.assert_close(got[k].float(), expected[k].float(), rtol=1e-4, atol=1e-5)


def test_a_frozen_encoder_keeps_the_statistics_its_head_is_trained_on(env: dict) -> None:
    """LP-FT's probe phase: the encoder is frozen (eval mode while training); its statistics stay as they are,
    the head's layers are recomputed, and the frozen features are the same before and after. Before the fix
    the frozen layers were reset to mean 0, variance 1 and the probe phase validated at chance."""
    net = _net()
    for m in net.encoder.modules():  # statistics of pretraining, not the identity's
        if isinstance(m, nn.BatchNorm3d):
            m.running_mean.uniform_(-1.0, 1.0)
            m.running_var.uniform_(0.5, 2.0)
    net.freeze()
    net.train()
    encoder_stats = {k: v for k, v in _bn_buffers(net).items() if k.startswith("encoder.")}
    assert encoder_stats
    labelled = _labelled(env)
    train = VolumeStackDataset(env["table"], env["cache"], split="train", transform=eval_transform(), progress=False)
    volumes = torch.stack([torch.as_tensor(train[int(i)]["image"]) for i in labelled.indices])
    net.encoder.eval()
    with torch.no_grad():
        features = net.encoder(volumes)
    net.train()
    PreciseBN(net, env["table"], labelled, env["cache"], batch_size=4).recompute()
    after = _bn_buffers(net)
    for k, v in encoder_stats.items():
        assert torch.equal(after[k], v), k
    assert net.training and not net.encoder.training  # modes as they were
    with torch.no_grad():
        torch.testing.assert_close(net.encoder(volumes), features)
    net.freeze(False)  # fine-tuning: the encoder trains, so its statistics are recomputed
    PreciseBN(net, env["table"], labelled, env["cache"], batch_size=4).recompute()
    assert any(not torch.equal(_bn_buffers(net)[k], v) for k, v in encoder_stats.items())


def test_at_most_max_volumes_a_fixed_choice(env: dict) -> None:
    labelled = _labelled(env, 1.0)
    a = PreciseBN(_net(), env["table"], labelled, env["cache"], max_volumes=5).volumes()
    b = PreciseBN(_net(), env["table"], labelled, env["cache"], max_volumes=5).volumes()
    assert len(a) == 5 and a.indices == b.indices and set(a.indices) <= set(int(i) for i in labelled.indices)
    assert len(PreciseBN(_net(), env["table"], labelled, env["cache"]).volumes()) == len(labelled)


def test_attaches_only_when_enabled_and_there_is_batch_norm(env: dict) -> None:
    from ignite.engine import Engine, Events

    labelled = _labelled(env)
    plain = nn.Sequential(nn.Conv3d(1, 2, 3), nn.ReLU())
    assert has_batch_norm(_net()) and not has_batch_norm(plain)
    for net, enabled, attached in ((_net(), True, True), (_net(), False, False), (plain, True, False)):
        engine = Engine(lambda e, b: None)
        handler = PreciseBN(net, env["table"], labelled, env["cache"], enabled=enabled)
        handler.attach(engine)
        assert engine.has_event_handler(handler, Events.STARTED) == attached


def _run(env: dict, name: str, **overrides) -> tuple[dict, Path]:
    out = env["root"] / name
    workflow = create_workflow(config_file=FINETUNE, run_id="finetune", ckpt_dir=str(out / "models"),
                               output_dir=str(out / "eval"), **{**env["overrides"], **overrides})
    workflow.run()
    final = {k: v.detach().clone() for k, v in workflow.parser.get_parsed_content("classifier").state_dict().items()}
    workflow.finalize()
    return final, out / "models"


def test_in_the_bundle_training_is_unchanged_and_the_best_checkpoint_holds_recomputed_statistics(env: dict) -> None:
    on, models = _run(env, "on", epochs=3, label_fraction=0.5)
    off, _ = _run(env, "off", epochs=3, label_fraction=0.5, precise_bn=False)
    # the same training steps: every weight of the last step equal, bit for bit
    for k in on:
        if "running_" not in k and "num_batches" not in k:
            assert torch.equal(on[k], off[k]), k
    # the best checkpoint was validated with statistics recomputed from its own weights on the labelled volumes
    best = torch.load(models / "finetune_best.pt", weights_only=False)["model"]
    from cryomonai.engines import AutocastInferer, PrepareBatchMemoryFormat, native_bf16

    net = _net()
    net.load_state_dict(best)
    net.eval()
    saved = _bn_buffers(net)
    # as the bundle's validator runs it: its cache, channels-last batches, bf16 autocast where the CPU has it
    PreciseBN(net, env["table"], _labelled(env), env["root"] / "data" / "cache" / "volumes.npy",
              prepare_batch=PrepareBatchMemoryFormat(torch.channels_last_3d),
              inferer=AutocastInferer(native_bf16("cpu")), batch_size=4).recompute()
    for k, v in _bn_buffers(net).items():
        torch.testing.assert_close(saved[k].float(), v.float(), rtol=1e-3, atol=1e-4)
    # without it, the best checkpoint keeps the running statistics of training, which differ
    off_best = torch.load(env["root"] / "off" / "models" / "finetune_best.pt", weights_only=False)["model"]
    assert any(not torch.allclose(off_best[k].float(), best[k].float()) for k in saved if "running_mean" in k)
