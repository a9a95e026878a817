"""A pretraining killed with SIGKILL in the middle of an epoch and resumed with ``--resume true``
ends with exactly the weights, MoCo queue, optimizer and epoch of a run that was never interrupted.

Three processes run the bundle's MoCo pretraining (``common.json`` + ``pretrain.json`` +
``methods/moco.json``) on a tiny simulated dataset (3 classes × 8 of 16³; 15 training particles,
batch 4, ``drop_last``: 3 steps per epoch; 3 epochs; a checkpoint after every epoch):

Each twice: views made by the loader's transforms, and made from the batch on the device
(``augment_on_device``: torch's generator, which RNGState reseeds too).

1. uninterrupted, to the end;
2. the same command, parked by the driver below on the 2nd step of epoch 2 (iteration
   :data:`KILL_AT`, after the epoch-1 checkpoint was written) and killed there with ``SIGKILL``;
   parking makes the moment of death the same in every run, so the test cannot flake;
3. the same command with ``resume=True``, which loads ``pretrain_checkpoint_epoch=1.pt``.

The final checkpoints of 1 and 3 must be equal tensor for tensor (``torch.equal``, on CPU). That
holds because :class:`cryomonai.engines.RNGState` reseeds torch, numpy, ``random`` and every
MONAI transform of the training set at the start of each epoch from (seed, epoch, rank): the
resumed run starts epoch 2 in the random state the uninterrupted run had there.

This module is also the driver of those runs: ``python tests/test_resume.py '<overrides json>' [kill_at]``.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from cryomonai.engines import RNGState

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "bundles" / "cryo_ssl"
CONFIGS = [str(BUNDLE / "configs" / f) for f in ("common.json", "pretrain.json", "methods/moco.json")]
CLASSES = ("1bxn", "1qvr", "1s3x")
EPOCHS, STEPS = 3, 3  # 15 training particles, batch 4, drop_last
KILL_AT = STEPS + 2  # global iteration: the 2nd of the 3 steps of epoch 2
PARKED = "parked at iteration"


def _env() -> dict[str, str]:
    """One thread everywhere, so CPU kernels sum in the same order in every process."""
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 classes × 8 subtomograms of 16³ (15 train / 3 val / 6 test) and their volume cache."""
    from cryomonai.data.dataset import build_volume_cache
    from cryomonai.simulate.dataset import simulate_dataset

    root = tmp_path_factory.mktemp("resume")
    table = simulate_dataset(root / "data", n_per_class=8, box=16, classes=CLASSES, seed=0, workers=0, progress=False)
    build_volume_cache(table, root / "data" / "cache" / "volumes.npy", progress=False)
    return root / "data"


def _overrides(data: Path, run: Path, **extra: Any) -> dict[str, Any]:
    return {
        "bundle_root": str(BUNDLE), "dataset_dir": str(data), "ckpt_dir": str(run / "models"),
        "output_dir": str(run / "eval"), "simulate": False, "progress": False, "box": 16, "batch_size": 4,
        "epochs": EPOCHS, "num_workers": 0, "ssl_method#queue_size": 16, "network_def#channels": 8, **extra,
    }


def _driver(overrides: Mapping[str, Any], kill_at: int = 0) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), json.dumps(dict(overrides)), str(kill_at)]


def _run_to_the_end(overrides: Mapping[str, Any]) -> None:
    done = subprocess.run(_driver(overrides), cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def _run_and_kill(overrides: Mapping[str, Any], kill_at: int, log: Path) -> None:
    """Start the run, wait until it is parked at iteration ``kill_at``, then SIGKILL it (stderr in ``log``)."""
    with open(log, "w") as err:
        proc = subprocess.Popen(_driver(overrides, kill_at), cwd=REPO, env=_env(), stdout=subprocess.PIPE,
                                stderr=err, text=True)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # ends at EOF if the process dies before parking
            if line.startswith(PARKED):
                break
        else:
            pytest.fail(f"the run ended (code {proc.wait(timeout=60)}) before iteration {kill_at}: "
                        f"{log.read_text()[-3000:]}")
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def _assert_same(a: Any, b: Any, where: str = "checkpoint") -> None:
    """Exact equality of two loaded checkpoints (nested dicts/lists of tensors and plain values)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape, where
        same = torch.equal(a, b)
        assert same, f"{where} differs: max |a - b| = {float((a.double() - b.double()).abs().max())}"
    elif isinstance(a, Mapping):
        assert isinstance(b, Mapping) and set(a) == set(b), f"{where}: keys {sorted(a)} != {sorted(b)}"
        for key in a:
            _assert_same(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


@pytest.mark.parametrize("augment_on_device", [False, True], ids=["loader_views", "device_views"])
def test_sigkill_mid_epoch_then_resume_equals_an_uninterrupted_run(
    dataset: Path, tmp_path: Path, augment_on_device: bool
) -> None:
    """With the views made by the loader's transforms, or from the batch on the device (torch's generator)."""
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    _run_to_the_end(_overrides(dataset, straight, augment_on_device=augment_on_device))

    _run_and_kill(_overrides(dataset, killed, augment_on_device=augment_on_device), KILL_AT, tmp_path / "killed.log")
    models = killed / "models"
    found = sorted(p.name for p in models.glob("*.pt"))
    assert found == ["pretrain_checkpoint_epoch=1.pt"], (found, (tmp_path / "killed.log").read_text()[-3000:])
    epoch_1 = torch.load(models / "pretrain_checkpoint_epoch=1.pt", weights_only=True)
    _run_to_the_end(_overrides(dataset, killed, resume=True, augment_on_device=augment_on_device))

    want = torch.load(straight / "models" / "pretrain.pt", weights_only=True)
    got = torch.load(models / "pretrain.pt", weights_only=True)
    assert dict(want["trainer"]) == {"epoch_length": STEPS, "iteration": EPOCHS * STEPS, "max_epochs": EPOCHS}
    assert int(want["model"]["steps_done"]) == EPOCHS * STEPS
    assert int(want["model"]["queue_ptr"]) == (EPOCHS * STEPS * 4) % 16
    _assert_same(want, got)
    # the resumed run did train epochs 2 and 3: queue, weights and Adam's step moved since epoch 1
    assert epoch_1["trainer"]["iteration"] == STEPS and int(got["optimizer"]["state"][0]["step"]) == EPOCHS * STEPS
    assert not torch.equal(got["model"]["queue"], epoch_1["model"]["queue"])
    trained = [k for k in got["model"] if k.startswith(("encoder.", "head.")) and k.endswith("weight")]
    assert trained and all(not torch.equal(got["model"][k], epoch_1["model"][k]) for k in trained)


# ---- RNGState, in one process ---------------------------------------------------------------------


def _draws() -> tuple[float, float, float]:
    return float(torch.rand(())), float(np.random.rand()), random.random()


def test_rng_state_seeds_every_stream_from_seed_epoch_and_rank() -> None:
    rng = RNGState(seed=3)
    seeds = {rng.epoch_seed(epoch, rank) for epoch in (1, 2) for rank in (0, 1)} | {RNGState(4).epoch_seed(1)}
    assert len(seeds) == 5 and all(0 <= s < 2**32 for s in seeds)
    rng.reseed(epoch=2)
    first = _draws()
    _draws()
    rng.reseed(epoch=2)
    assert _draws() == first


def _run_epochs(resume_from: int, extra_draws: int) -> list[tuple]:
    """What each iteration of epochs ``resume_from + 1 … 3`` drew (batch, torch, numpy, random)."""
    from ignite.engine import Engine
    from torch.utils.data import DataLoader

    seen: list[tuple] = []
    loader = DataLoader(list(range(6)), batch_size=2, shuffle=True, generator=torch.Generator())
    engine = Engine(lambda e, batch: seen.append((e.state.epoch, batch.tolist(), *_draws())))
    RNGState(seed=0, trainer=engine).attach(engine)  # attaching twice reseeds once
    if resume_from:
        engine.load_state_dict({"epoch": resume_from, "epoch_length": 3, "max_epochs": 3})
    for _ in range(extra_draws):  # a fresh process, or one that did other things first
        _draws()
    engine.run(loader, max_epochs=3)
    return seen


def test_rng_state_makes_an_engine_resumed_at_an_epoch_draw_what_the_whole_run_drew() -> None:
    whole = _run_epochs(resume_from=0, extra_draws=0)
    assert len(whole) == 9 and whole[0][1:] != whole[3][1:]  # epochs differ
    assert _run_epochs(resume_from=1, extra_draws=5) == whole[3:]
    assert _run_epochs(resume_from=2, extra_draws=1) == whole[6:]


def test_rng_state_is_saved_as_its_seed_and_a_resume_takes_the_saved_seed(caplog: pytest.LogCaptureFixture) -> None:
    saved = RNGState(seed=7).state_dict()
    assert saved == {"seed": 7}
    rng = RNGState(seed=0)
    with caplog.at_level("WARNING", logger="cryomonai.engines.rng"):
        rng.load_state_dict(saved)
    assert rng.seed == 7 and "checkpoint's seed 7" in caplog.text
    assert rng.epoch_seed(2) == RNGState(seed=7).epoch_seed(2)


# ---- the driver ----------------------------------------------------------------------------------


def main(overrides_json: str, kill_at: str = "0") -> None:
    """Run the bundle's ``pretrain`` with ``overrides``; park (sleep) after iteration ``kill_at`` (> 0)."""
    from ignite.engine import Events
    from monai.bundle.scripts import create_workflow

    torch.set_num_threads(1)
    workflow = create_workflow(config_file=CONFIGS, run_id="pretrain", **json.loads(overrides_json))
    trainer = workflow.parser.get_parsed_content("train#trainer")
    if int(kill_at) > 0:

        @trainer.on(Events.ITERATION_COMPLETED(once=int(kill_at)))
        def _park(engine: Any) -> None:
            print(f"{PARKED} {engine.state.iteration} (epoch {engine.state.epoch})", flush=True)
            signal.pause()  # until the test kills this process

    workflow.run()
    workflow.finalize()


if __name__ == "__main__":
    main(*sys.argv[1:])
