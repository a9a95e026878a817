"""Clean multi-process exits: ``torchrun --nproc_per_node=2`` pretraining and fine-tuning through the
bundle (gloo on CPU) exit 0 every time, run after run — no hang at teardown, no ``os._exit``.

CI runs ``CRYOMONAI_DDP_RUNS`` (default 3) rounds of each; the full check is 20 in a row::

    CRYOMONAI_DDP_RUNS=20 .venv/bin/python -m pytest -q tests/test_ddp_exits.py
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONFIGS = "bundles/cryo_ssl/configs"
RUNS = int(os.environ.get("CRYOMONAI_DDP_RUNS", "3"))
TIMEOUT_S = 180  # a run that hangs at teardown is killed here and fails the test


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    from cryomonai.simulate.dataset import simulate_dataset

    root = tmp_path_factory.mktemp("ddp_exits")
    simulate_dataset(root / "data", n_per_class=6, box=16, classes=("1bxn", "1qvr", "3cf3"), seed=0, workers=0,
                     progress=False, n_neighbours=0)
    return root


def _torchrun(run_id: str, files: list[str], root: Path, i: int, *extra: str) -> subprocess.CompletedProcess:
    config = "[" + ",".join(f"'{CONFIGS}/{f}'" for f in files) + "]"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "monai.bundle",
           "run", run_id, "--config_file", config, "--bundle_root", "bundles/cryo_ssl", "--dataset_dir",
           str(root / "data"), "--ckpt_dir", str(root / f"{run_id}{i}" / "models"), "--output_dir",
           str(root / f"{run_id}{i}" / "eval"), "--epochs", "1", "--batch_size", "2", "--progress", "False",
           "--simulate", "False", "--encoder", "rb3d_bn", *extra]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    try:
        return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"{run_id} run {i + 1} did not exit within {TIMEOUT_S} s (a teardown hang?): "
                    f"{(err.stderr or b'')[-2000:]!r}")


@pytest.mark.parametrize("i", range(RUNS))  # one round per test item (each within the suite's per-test timeout)
def test_torchrun_pretrain_and_finetune_exit_cleanly_run_after_run(data, i):
    done = _torchrun("pretrain", ["common.json", "pretrain.json", "multi_gpu_pretrain.json"], data, i)
    assert done.returncode == 0, f"pretrain run {i + 1}: exit {done.returncode}\n{done.stderr[-3000:]}"
    assert (data / f"pretrain{i}" / "models" / "pretrain.pt").is_file()
    pretrained = str(data / f"pretrain{i}" / "models" / "pretrain.pt")
    done = _torchrun("finetune", ["common.json", "finetune.json", "multi_gpu_finetune.json"], data, i,
                     "--pretrained", pretrained, "--label_fraction", "1.0")
    assert done.returncode == 0, f"finetune run {i + 1}: exit {done.returncode}\n{done.stderr[-3000:]}"
    assert (data / f"finetune{i}" / "models" / "finetune_best.pt").is_file()
