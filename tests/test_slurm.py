"""The grid on a real SLURM (``cryomonai grid --executor slurm``): every run its own job through submitit.

``.ci/run`` brings up a one-node SLURM on localhost (``.ci/slurm/cluster.sh up``) and sets
``CRYOMONAI_SLURM_TESTS=1``: then these tests *require* it and fail if it is not up. Without the
variable (a developer's machine) they are skipped with that reason.

Tested end to end with real daemons and real signals: a job signalled as at its time limit is
requeued and resumes from its last epoch checkpoint; a driver killed mid-grid and rerun attaches to
the job still running and resubmits nothing; a failed or cancelled job stops the grid with the run
it belonged to and its log, instead of a hang; the results equal the local grid's; and a pretraining
with 2 tasks runs as DDP (gloo) through the same path.
"""

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from cryomonai.experiment.executors import job_overhead, slurm_state
from cryomonai.experiment.grid import load_preset, run_grid
from cryomonai.io.table import read_particle_table

REQUIRED = os.environ.get("CRYOMONAI_SLURM_TESTS") == "1"


def _slurm_up() -> str:
    """'' if a SLURM node is idle here, else why not."""
    if shutil.which("sinfo") is None:
        return "no SLURM client (sinfo) on this machine"
    done = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True, timeout=30)
    if done.returncode != 0 or not done.stdout.strip():
        return f"no SLURM controller answers: {done.stderr.strip()}"
    return ""


@pytest.fixture(scope="module", autouse=True)
def slurm():
    why = _slurm_up()
    if why and REQUIRED:
        pytest.fail(f"CRYOMONAI_SLURM_TESTS=1 but {why} (.ci/slurm/cluster.sh up; logs: .ci/slurm/cluster.sh logs)")
    if why:
        pytest.skip(f"{why}; CI starts one (.ci/slurm/cluster.sh up) and sets CRYOMONAI_SLURM_TESTS=1")


def _preset(tmp_path: Path, **kw) -> Path:
    spec = dict(
        datasets=[{"name": "snr_1", "snr": 1.0, "n_per_class": 8, "box": 8, "binning": 2, "classes": ["1bxn", "1qvr", "3cf3"],
                   "max_shift": 1.0, "n_neighbours": 1, "workers": 0}],
        methods=["random", "moco"], label_fractions=[1.0], repeats=1, seed=3, workers=1,
        common={"batch_size": 4}, pretrain={"epochs": 40, "save_interval": 2}, finetune={"epochs": 2},
        readouts=True, report={"gradcam_examples": 2},
        executor={"kind": "slurm", "poll_s": 0.5, "cpus_per_job": 1, "time_min": 10},
    )
    spec.update(kw)
    path = tmp_path / "tiny_slurm.json"
    path.write_text(json.dumps(spec))
    return path


def _driver(preset: Path, out: Path, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "cryomonai.cli", "grid", "--preset", str(preset), "--out", str(out),
           "--executor", "slurm", "--report", "False"]
    return subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})


def _wait_for(what: str, check, proc: subprocess.Popen | None = None, log: Path | None = None, timeout: float = 240):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if (found := check()):
            return found
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the driver exited ({proc.returncode}) before {what}:\n{log.read_text()[-3000:] if log else ''}")
        time.sleep(0.3)
    pytest.fail(f"timed out waiting for {what}:\n{log.read_text()[-3000:] if log else ''}")


def _job_of(out: Path, kind: str) -> str:
    if not (out / "jobs.csv").is_file():
        return ""
    jobs = pd.read_csv(out / "jobs.csv", dtype={"job_id": str})
    rows = jobs[jobs["run"].str.startswith(f"('{kind}'")]
    return rows["job_id"].iloc[0] if len(rows) else ""


def _restarts(job_id: str) -> int:
    text = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True).stdout
    return int(text.split("Restarts=")[1].split()[0]) if "Restarts=" in text else -1


NUMBERS = ["dataset", "method", "label_fraction", "repeat", "recipe", "n_labelled", "best_val_accuracy",
           "test_accuracy", "linear_probe_accuracy", "knn_accuracy", "run_dir"]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_grid_on_slurm_survives_a_requeue_and_a_driver_restart_with_the_local_results(tmp_path):
    preset = _preset(tmp_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each 1-CPU job: the same floating point
    try:
        local = run_grid(load_preset(preset, executor={}), tmp_path / "local", report=False, progress=False)
    finally:
        torch.set_num_threads(threads)

    out, log1, log2 = tmp_path / "slurm", tmp_path / "driver1.log", tmp_path / "driver2.log"
    first = _driver(preset, out, log1)
    try:
        job = _wait_for("the pretraining job", lambda: _job_of(out, "pretrain"), first, log1)
        ckpts = out / "pretrain" / "snr_1" / "moco" / "s3" / "models"
        _wait_for("its first epoch checkpoint", lambda: list(ckpts.glob("pretrain_checkpoint_epoch=*.pt")), first, log1)
        # what SLURM sends before a time limit or a preemption (submitit asks for --signal=USR2@90)
        subprocess.run(["scancel", "--signal=USR2", job], check=True)
        _wait_for("the requeue", lambda: _restarts(job) >= 1 and slurm_state(job) == "PENDING", first, log1)
        first.send_signal(signal.SIGKILL)  # the driver dies while its job waits to run again
        first.wait()
        # SLURM holds a requeued job for about 2 minutes (Reason=BeginTime): release it now
        subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], check=True)
        second = _driver(preset, out, log2)
        assert second.wait(timeout=400) == 0, log2.read_text()[-3000:]
    finally:
        for proc in (first,):
            if proc.poll() is None:
                proc.kill()
    text2 = log2.read_text()
    assert f"attached to job {job}" in text2, text2[-3000:]
    jobs = pd.read_csv(out / "jobs.csv", dtype={"job_id": str})
    assert jobs["run"].is_unique and len(jobs) == 3, jobs  # pretraining + 2 fine-tunings, none submitted twice
    assert _restarts(job) == 1 and slurm_state(job) == "COMPLETED"
    log = (out / "jobs" / job / f"{job}_0_log.out").read_text() + (out / "jobs" / job / f"{job}_0_log.err").read_text()
    assert "Restored all variables from" in log and "pretrain_checkpoint_epoch=" in log  # resumed, not restarted
    slurm = pd.read_csv(out / "results.csv")
    pd.testing.assert_frame_equal(slurm[NUMBERS], local[NUMBERS])
    overhead = job_overhead(out / "jobs.csv")  # a job that finished while no driver ran is never collected
    assert len(overhead) >= 2 and (overhead[["queued_s", "run_s", "collect_s"]] >= 0).all().all()
    assert "jobs/" in log2.read_text() or "jobs/" in log1.read_text()  # the grid says where the logs are


@pytest.mark.slow
def test_a_failed_job_stops_the_grid_naming_its_run_and_showing_its_log(tmp_path):
    preset = _preset(tmp_path, methods=["random"], finetune={"epochs": 1, "optimizer#_target_": "torch.optim.NoSuchOptimizer"})
    log = tmp_path / "driver.log"
    proc = _driver(preset, tmp_path / "out", log)
    assert proc.wait(timeout=200) == 1
    text = log.read_text()
    assert "fine-tune random on snr_1, 100 % labels, repeat 0" in text and "failed in job" in text, text[-3000:]
    assert "NoSuchOptimizer" in text and "---- " in text  # the job's own log tail


@pytest.mark.slow
def test_a_cancelled_job_fails_the_grid_instead_of_hanging(tmp_path):
    # long enough that it cannot finish in the seconds between SLURM's SIGTERM and SIGKILL
    preset = _preset(tmp_path, methods=["moco"], pretrain={"epochs": 1000, "save_interval": 2})
    out, log = tmp_path / "out", tmp_path / "driver.log"
    proc = _driver(preset, out, log)
    try:
        job = _wait_for("the pretraining job", lambda: _job_of(out, "pretrain"), proc, log)
        ckpts = out / "pretrain" / "snr_1" / "moco" / "s3" / "models"
        _wait_for("its first epoch checkpoint", lambda: list(ckpts.glob("pretrain_checkpoint_epoch=*.pt")), proc, log)
        subprocess.run(["scancel", job], check=True)  # cancelled: no result will ever come
        assert proc.wait(timeout=120) == 1
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert f"cryomonai: grid tiny_slurm: pretrain moco on snr_1, seed 3 failed in job {job} (state " in text, text[-3000:]
    assert "Traceback" not in text.split("cryomonai: grid")[0][-200:]  # the message, not a traceback of ours


@pytest.mark.slow
def test_ddp_pretraining_as_one_job_of_two_tasks(tmp_path):
    """``nodes`` × ``tasks_per_node`` = 2: the pretraining job runs the bundle's multi_gpu_pretrain.json on two
    gloo ranks, rendezvous from SLURM's environment; the fine-tuning that follows is a plain job."""
    preset = _preset(tmp_path, methods=["moco"], pretrain={"epochs": 2, "batch_size": 2, "ssl_method#queue_size": 12},
                     executor={"kind": "slurm", "poll_s": 0.5, "cpus_per_job": 1, "nodes": 1, "tasks_per_node": 2})
    out, log = tmp_path / "out", tmp_path / "driver.log"
    assert _driver(preset, out, log).wait(timeout=300) == 0, log.read_text()[-3000:]
    ckpt = torch.load(out / "pretrain" / "snr_1" / "moco" / "s3" / "models" / "pretrain_checkpoint_epoch=2.pt",
                      weights_only=True)
    train = int((read_particle_table(out / "data" / "snr_1" / "particles.star").df["split"] == "train").sum())
    steps = math.ceil(train / 2) // 2  # the training split padded over 2 ranks, batch 2, drop_last
    assert steps != train // 2  # what one process would have run
    assert ckpt["trainer"]["epoch_length"] == steps and ckpt["trainer"]["iteration"] == 2 * steps
    assert int(ckpt["model"]["queue_ptr"]) == (2 * steps * 2 * 2) % 12  # both ranks' keys enqueued
    jobs = pd.read_csv(out / "jobs.csv", dtype={"job_id": str})
    assert list(jobs["tasks"]) == [2, 1]
    assert (out / "results.csv").is_file()
