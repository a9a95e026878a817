"""The ``slurm`` and ``debug`` executors: every training run of a grid a job handed to submitit (see
:mod:`~cryomonai.experiment.executors` for what the executors share and how a SLURM grid resumes)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pandas as pd

from cryomonai.errors import GridJobError
from cryomonai.experiment.executors import ExecutorSpec, TrainRun, slurm_state, slurm_states
from cryomonai.experiment.layout import GridLayout
from cryomonai.io.atomic import atomic_write

__all__ = ["JOB_COLUMNS", "SubmititPool", "checkpointable"]

log = logging.getLogger(__name__)

#: SLURM job states after which a job will not run again
_FINAL = {"BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY", "TIMEOUT",
          "GONE"}
#: final states in which a job wrote no result of its own (not TIMEOUT: submitit requeues a job at its time limit)
_FAILED = {"BOOT_FAIL", "CANCELLED", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY"}
#: ``jobs.csv``: one row per submitted job; times in seconds since the epoch (``started``/``finished``: the
#: run inside the job, after Python and the package are imported; ``collected``: the driver saw it done)
JOB_COLUMNS = ["run", "job_id", "folder", "tasks", "submitted", "started", "finished", "collected"]


def checkpointable() -> type:
    """:class:`TrainRun` as a ``submitit.helpers.Checkpointable`` (submitit imported only when used)."""
    import submitit

    return type("CheckpointableTrainRun", (TrainRun, submitit.helpers.Checkpointable), {"__module__": __name__})


def _log_tail(job: Any, lines: int = 30) -> str:
    texts = []
    for path in (job.paths.stderr, job.paths.stdout):
        if Path(path).is_file():
            texts.append(f"---- {path}\n" + "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:]))
    return "\n".join(texts) or f"(no log at {job.paths.stdout})"


class SubmititPool:
    """Every run a submitit job (``spec.kind``: ``slurm`` or ``debug``); see the module docstring."""

    def __init__(self, trainer: Any, spec: ExecutorSpec) -> None:
        import submitit

        self.trainer, self.preset, self.spec = trainer, trainer.preset, spec
        self.out, layout = Path(trainer.out), GridLayout(trainer.out)
        self.capacity = 1 if spec.kind == "debug" else spec.max_jobs
        self.records, self.logs = layout.jobs, layout.job_logs
        self._executor = submitit.AutoExecutor(folder=self.logs, cluster=spec.kind)
        self._call = checkpointable()

    def _recorded(self) -> pd.DataFrame:
        if not self.records.is_file():
            return pd.DataFrame(columns=JOB_COLUMNS)
        return pd.read_csv(self.records, dtype={"job_id": str})

    def _attach(self, run: str) -> Any | None:
        """The job recorded for ``run`` if it is still queued, running or has its result; else None."""
        import submitit

        rows = self._recorded()
        rows = rows[rows["run"] == run]
        if rows.empty:
            return None
        row = rows.iloc[-1]
        job = submitit.SlurmJob(folder=row["folder"], job_id=str(row["job_id"]), tasks=tuple(range(int(row["tasks"]))))
        if job.paths.result_pickle.exists() or slurm_state(job.job_id) not in _FINAL:
            return job
        return None

    def submit(self, job: Any, label: str) -> Any:
        run = repr((job.kind, *job.args))
        if self.spec.kind == "slurm" and (attached := self._attach(run)) is not None:
            log.info("[grid %s] attached to job %s (still queued or running): %s", self.preset.name, attached.job_id, label)
            return attached
        distributed = job.kind == "pretrain" and self.spec.nodes * self.spec.tasks_per_node > 1
        self._executor.update_parameters(**self.spec.slurm_parameters(f"cryomonai-{job.kind}", distributed))
        handle = self._executor.submit(self._call(type(self.trainer), self.preset, str(self.out), job, self.trainer.progress))
        if self.spec.kind == "slurm":
            row = {"run": run, "job_id": str(handle.job_id), "folder": str(self.logs),
                   "tasks": handle.num_tasks, "submitted": time.time()}
            self._write(pd.concat([self._recorded(), pd.DataFrame([row], columns=JOB_COLUMNS)], ignore_index=True))
            log.info("[grid %s] job %s: %s; log %s", self.preset.name, handle.job_id, label, handle.paths.stdout)
        return handle

    def _write(self, table: pd.DataFrame) -> None:
        with atomic_write(self.records, "w") as fh:  # only the driver writes it
            table.to_csv(fh, index=False)

    @staticmethod
    def _finished(handle: Any, states: dict[str, str]) -> bool:
        """Done when SLURM says so, not when a result file exists: a job requeued at its time limit can
        leave the error of its interrupted attempt as a result (a DataLoader worker killed by the requeue
        can fail the step before it exits) and then run again."""
        return states.get(str(handle.job_id), "GONE").split("+")[0] in _FINAL

    def wait(self, handles: list[Any]) -> list[Any]:
        if self.spec.kind == "debug":
            return handles[:1]  # a debug job runs in this process when its result is asked for
        while True:
            states = slurm_states()
            done = [h for h in handles if self._finished(h, states)]
            if done:
                return done
            time.sleep(self.spec.poll_s)

    def result(self, handle: Any, label: str) -> dict[str, float] | None:
        if self.spec.kind == "slurm":
            state = slurm_state(handle.job_id)
            if state.split("+")[0] in _FAILED and not handle.paths.result_pickle.exists():
                # ended without a result (e.g. scancel): submitit would keep polling accounting for one
                raise GridJobError(f"grid {self.preset.name}: {label} failed in job {handle.job_id} (state {state}); "
                                   f"its log:\n{_log_tail(handle)}\n(no result)")
        try:
            seconds = handle.results()[0]  # the seconds of rank 0 (the only task unless DDP)
        except Exception as err:  # submitit's FailedJobError / UncompletedJobError, or the run's own in debug
            if self.spec.kind == "debug":
                raise
            state = slurm_state(handle.job_id)
            raise GridJobError(f"grid {self.preset.name}: {label} failed in job {handle.job_id} (state {state}); "
                               f"its log:\n{_log_tail(handle)}\n({type(err).__name__})") from None
        if self.spec.kind == "slurm" and seconds is not None:
            table = self._recorded()
            row = table.index[table["job_id"] == str(handle.job_id)]
            table.loc[row, ["started", "finished", "collected"]] = [seconds["started"], seconds["finished"], time.time()]
            self._write(table)
        return seconds

    def close(self) -> None:
        """Nothing to stop: jobs still queued or running stay recorded, and a rerun attaches to them."""
