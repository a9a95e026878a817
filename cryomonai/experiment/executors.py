"""Who trains a grid's runs: this process, worker processes on this machine, or jobs handed to submitit.

The grid's scheduler (:mod:`~cryomonai.experiment.scheduler`) decides *what* runs and *when*; an
executor only trains one run (a pretraining, a recipe-selection or a cell fine-tuning) and says when
it is done. Every executor has ``capacity`` (runs at once), ``submit(job, label)`` → a handle,
``wait(handles)`` → the finished ones, ``result(handle, label)`` → the run's seconds, and ``close()``:

* ``local`` with ``workers: 1`` (:class:`InProcessPool`): every run in this process, one after
  another — the serial grid.
* ``local`` with ``workers`` > 1 (:class:`LocalPool`): ``workers`` spawned processes on this
  machine, each with its share of the threads (the one-machine default of the CPU presets).
* ``slurm`` (:class:`~cryomonai.experiment.slurm.SubmititPool`): every run is its own SLURM job
  through submitit (``submitit.AutoExecutor``): the preset's ``executor`` section gives partition,
  account, GPUs, CPUs, memory, time limit and extra sbatch options. A job that reaches its time limit
  or is preempted gets submitit's ``USR2`` signal, is requeued and resumes from its last epoch
  checkpoint. Its threads follow ``SLURM_CPUS_PER_TASK``. Job ids go to ``<grid>/jobs.csv``: a
  driver that is killed and rerun attaches to the jobs still queued or running and resubmits none of
  them; logs are ``<grid>/jobs/<job id>/``. Job states are read with ``scontrol`` (no accounting
  database, ``sacct``, is needed): a job that leaves the queue without a result is a failure,
  reported with its log tail and its run, never waited on forever.
* ``debug``: submitit's debug executor, every run in this process, one after another.

A pretraining job with ``nodes`` × ``tasks_per_node`` > 1 is one multi-node DDP job: every task
runs the bundle's ``multi_gpu_pretrain.json`` with the rendezvous taken from SLURM's environment
(``submitit.helpers.TorchDistributedEnvironment``).
"""

from __future__ import annotations

import ctypes
import logging
import os
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field, fields
from multiprocessing import get_context, get_start_method, set_start_method
from typing import Any

import pandas as pd
import torch

from cryomonai.errors import ConfigError, GridJobError, user_error

__all__ = ["EXECUTORS", "ExecutorSpec", "GridJobError", "InProcessPool", "LocalPool", "TrainRun", "job_overhead",
           "slurm_state", "slurm_states", "train"]

log = logging.getLogger(__name__)

#: the executor kinds a preset (``executor.kind``) or ``cryomonai grid --executor`` may name
EXECUTORS = ("local", "slurm", "debug")
#: prctl(2) option: the signal a process gets when its parent ends (Linux)
PR_SET_PDEATHSIG = 1


@dataclass
class ExecutorSpec:
    """The preset's ``executor`` section (every key also a ``cryomonai grid --<key>`` option).

    Attributes:
        kind: ``local``, ``slurm`` or ``debug`` (see the module docstring).
        partition / account: SLURM partition and account (``""``: the cluster's default).
        gpus_per_job / cpus_per_job / mem_gb: what each job asks for (``mem_gb`` 0: the default).
        time_min: each job's time limit in minutes; a run not done by then is requeued and resumes.
        sbatch: extra sbatch options, e.g. ``{"constraint": "a100", "qos": "high"}``.
        max_jobs: jobs queued or running at once.
        nodes / tasks_per_node: a pretraining job's DDP size (1 × 1: one process).
        poll_s: how often the driver looks at its jobs.
    """

    kind: str = "local"
    partition: str = ""
    account: str = ""
    gpus_per_job: int = 0
    cpus_per_job: int = 1
    mem_gb: float = 0
    time_min: int = 60
    sbatch: dict[str, Any] = field(default_factory=dict)
    max_jobs: int = 64
    nodes: int = 1
    tasks_per_node: int = 1
    poll_s: float = 2.0

    def __post_init__(self) -> None:
        if self.kind not in EXECUTORS:
            raise ConfigError("grid preset, key 'executor.kind' (or --executor)",
                              f"kind={self.kind!r} is not one of {list(EXECUTORS)}",
                              "use --executor local (this machine), slurm or debug")
        for name in ("cpus_per_job", "time_min", "max_jobs", "nodes", "tasks_per_node"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"grid preset, key 'executor.{name}' (or --{name})", f"{name}={value!r}",
                                  f"give {name} as a whole number >= 1")

    @classmethod
    def from_dict(cls, spec: dict[str, Any] | None) -> ExecutorSpec:
        """The section as written in a preset; unknown keys are a one-line error naming them."""
        spec = dict(spec or {})
        unknown = sorted(set(spec) - {f.name for f in fields(cls)})
        if unknown:
            raise ConfigError("grid preset, key 'executor'", f"unknown keys {unknown}",
                              f"use {sorted(f.name for f in fields(cls))}")
        return cls(**spec)

    def slurm_parameters(self, name: str, distributed: bool) -> dict[str, Any]:
        """submitit's ``update_parameters`` for one job (``slurm_``-prefixed where submitit wants it)."""
        params: dict[str, Any] = {"name": name, "timeout_min": self.time_min, "cpus_per_task": self.cpus_per_job,
                                  "nodes": self.nodes if distributed else 1,
                                  "tasks_per_node": self.tasks_per_node if distributed else 1}
        if self.gpus_per_job:
            params["gpus_per_node"] = self.gpus_per_job
        if self.mem_gb:
            params["mem_gb"] = self.mem_gb
        if self.partition:
            params["slurm_partition"] = self.partition
        if self.account:
            params["slurm_account"] = self.account
        if self.sbatch:
            params["slurm_additional_parameters"] = dict(self.sbatch)
        return params


class TrainRun:
    """One training run of the grid as a callable a job runs: ``TrainRun(GridTrainer, preset, out, job, progress)()``.

    Its threads follow ``SLURM_CPUS_PER_TASK`` inside a SLURM job. As a submitit
    ``Checkpointable`` (the subclass :func:`cryomonai.experiment.slurm.checkpointable` makes), a job signalled before its time
    limit or preemption resubmits this same call, which resumes from the run's last epoch checkpoint.

    ``progress``: the run's own progress bar (the bundle's ``progress``), shown only where this
    process's stderr is a terminal: a local worker of a grid started on one (its stderr is the
    driver's; several workers' bars then share the terminal's last lines with the grid's bar), never
    in a SLURM job (stderr is its log file, where a bar's redraws would be noise).
    """

    def __init__(self, runner_cls: type, preset: Any, out: str, job: Any, progress: bool = False) -> None:
        self.runner_cls, self.preset, self.out, self.job, self.progress = runner_cls, preset, out, job, progress

    def __call__(self) -> dict[str, float] | None:
        _handle_usr2_once()
        cpus = os.environ.get("SLURM_CPUS_PER_TASK")
        if cpus:
            torch.set_num_threads(int(cpus))
        distributed = int(os.environ.get("SLURM_NTASKS", "1")) > 1 and self.job.kind == "pretrain"
        if distributed:
            import submitit

            submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
        bars = self.progress and sys.stderr.isatty()
        started = time.time()
        seconds = train(self.runner_cls(self.preset, self.out, progress=bars), self.job, distributed)
        return None if seconds is None else {**seconds, "started": started, "finished": time.time()}


def train(trainer: Any, job: Any, distributed: bool = False) -> dict[str, float] | None:
    """Train ``job`` (a :class:`~cryomonai.experiment.graph.Job`) with ``trainer`` (a
    :class:`~cryomonai.experiment.training.GridTrainer`): its seconds, None if it was already trained."""
    if job.kind == "pretrain":
        return trainer.train_pretraining(*job.args, distributed=distributed)
    return trainer.train_finetune(*job.args)


def _handle_usr2_once() -> None:
    """Let submitit's checkpoint-and-requeue handler (on ``SIGUSR2``) act once, in this process only.

    SLURM signals every process of the job step, DataLoader workers included, and a forked worker
    inherits submitit's handler: it wrote the same checkpoint pickle as the main process, exited,
    and the main process's "DataLoader worker exited unexpectedly" became the job's result although
    the job was requeued (seen on Debian's SLURM 22.05 with ``scancel --signal=USR2``). The handler
    now does nothing in any other process, and ignores a second delivery in this one.
    """
    handler = signal.getsignal(signal.SIGUSR2)
    if not callable(handler) or getattr(handler, "__name__", "") == "once":
        return
    owner = os.getpid()

    def once(signum: int, frame: Any) -> None:
        if os.getpid() != owner:  # a forked worker: the main process checkpoints and requeues
            return
        signal.signal(signum, signal.SIG_IGN)
        handler(signum, frame)

    signal.signal(signal.SIGUSR2, once)


# -- this machine -----------------------------------------------------------------------------------
class InProcessPool:
    """One worker, this process: a run trains when :meth:`wait` is asked for it (the serial grid)."""

    capacity = 1

    def __init__(self, trainer: Any) -> None:
        self.trainer = trainer

    def submit(self, job: Any, label: str) -> Any:
        return job

    def wait(self, handles: list[Any]) -> list[Any]:
        return handles[:1]

    def result(self, handle: Any, label: str) -> dict[str, float] | None:
        return train(self.trainer, handle)

    def close(self) -> None:
        """Nothing to stop."""


def _init_worker(threads: int, start_method: str, parent: int | None = None) -> None:
    """A worker's threads; the parent's start method back for the worker's own DataLoader processes
    (a spawned process defaults to spawning: a loader worker per epoch would import torch again, ~9 s);
    and, on Linux, the worker ends with the grid (``parent``'s pid): a grid stopped by ``kill`` or a
    batch system's time limit leaves no worker training on (and holding its run's lock)."""
    torch.set_num_threads(threads)
    set_start_method(start_method, force=True)
    if parent is not None and sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the grid ended before the line above took effect
            os._exit(1)


def _train_local(run: TrainRun) -> dict[str, float] | None:
    """Train one run in a worker; a user error anywhere in its cause chain (e.g. one that MONAI's config
    parser wrapped) is raised as itself, so the grid prints it on one line."""
    try:
        return run()
    except Exception as err:
        user = user_error(err)
        if user is None or user is err:
            raise
        raise user from None


class LocalPool:
    """``workers`` spawned processes on this machine, each with ``threads // workers`` threads; this
    process (which evaluates while they train) gets the same share until :meth:`close`."""

    def __init__(self, trainer: Any, workers: int) -> None:
        self.trainer, self.capacity = trainer, workers
        threads = max(1, torch.get_num_threads() // workers)
        self._env, self._own = os.environ.get("OMP_NUM_THREADS"), torch.get_num_threads()
        os.environ["OMP_NUM_THREADS"] = str(threads)  # the spawned workers' OpenMP pools, before they import torch
        torch.set_num_threads(threads)
        # spawned, not forked: a process forked after this one ran OpenMP kernels can hang in its own (libgomp)
        self._pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_init_worker,
                                         initargs=(threads, get_start_method(), os.getpid()))

    def submit(self, job: Any, label: str) -> Future:
        run = TrainRun(type(self.trainer), self.trainer.preset, str(self.trainer.out), job, self.trainer.progress)
        return self._pool.submit(_train_local, run)

    def wait(self, handles: list[Future]) -> list[Future]:
        return list(wait(handles, return_when=FIRST_COMPLETED)[0])

    def result(self, handle: Future, label: str) -> dict[str, float] | None:
        return handle.result()  # a worker's error stops the grid here, with its message

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        torch.set_num_threads(self._own)
        if self._env is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = self._env


# -- SLURM's view of the jobs (the pool is :class:`cryomonai.experiment.slurm.SubmititPool`) ----------
def slurm_states() -> dict[str, str]:
    """Every job the controller knows: job id → state (``scontrol show job``; no accounting needed).

    A job the controller has forgotten (done longer than its ``MinJobAge`` ago) is absent: callers
    read a missing id as ``"GONE"``.
    """
    out = subprocess.run(["scontrol", "show", "job", "--oneliner"], capture_output=True, text=True, timeout=60)
    if out.returncode != 0 and "No jobs in the system" not in out.stdout + out.stderr:
        raise GridJobError(f"scontrol show job failed ({out.returncode}): {out.stderr.strip()[-500:]}")
    states = {}
    for line in out.stdout.splitlines():
        job, state = re.search(r"JobId=(\S+)", line), re.search(r"JobState=(\S+)", line)
        if job and state:
            states[job.group(1)] = state.group(1)
    return states


def slurm_state(job_id: str) -> str:
    """One job's state, ``"GONE"`` if the controller no longer knows it."""
    return slurm_states().get(str(job_id), "GONE")


def job_overhead(records: str | os.PathLike) -> pd.DataFrame:
    """Where a SLURM grid's job time went (from ``jobs.csv``): per finished job, ``queued_s`` (submit →
    the run starts inside the job: queueing, job start, Python imports), ``run_s`` (the run itself) and
    ``collect_s`` (the run ends → the driver has its result)."""
    jobs = pd.read_csv(records, dtype={"job_id": str}).dropna(subset=["collected"])
    return pd.DataFrame({"run": jobs["run"], "job_id": jobs["job_id"],
                         "queued_s": jobs["started"] - jobs["submitted"], "run_s": jobs["finished"] - jobs["started"],
                         "collect_s": jobs["collected"] - jobs["finished"]})
