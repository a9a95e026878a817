"""The local executor's workers: a user error inside one reaches the grid as one line, and they end with the grid."""

import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from cryomonai.errors import ConfigError, CryoDataError, user_error
from cryomonai.experiment.executors import _train_local


class _Wrapped:
    """A run that fails as a bundle run does when a ``$`` expression raises: MONAI wraps it in RuntimeError."""

    def __call__(self):
        try:
            raise CryoDataError("/runs/x/models", "is in use by another cryomonai run", "wait for it")
        except CryoDataError as err:
            raise RuntimeError("Failed to evaluate ConfigExpression") from err


class _Bug:
    def __call__(self):
        raise KeyError("a bug of ours")


@pytest.mark.parametrize("err", [CryoDataError("a.star, row 3", "has NaN", "re-extract it"),
                                 ConfigError("cpu.json, key 'workers'", "is 0", "give a whole number >= 1")])
def test_user_errors_cross_a_process_boundary_as_themselves(err):
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is type(err) and str(back) == str(err)
    assert (back.where, back.problem, back.fix) == (err.where, err.problem, err.fix)


def test_a_worker_raises_the_user_error_behind_a_wrapper_and_leaves_bugs_alone():
    with pytest.raises(CryoDataError) as got:
        _train_local(_Wrapped())
    assert str(got.value) == "/runs/x/models: is in use by another cryomonai run — fix: wait for it"
    assert got.value.__cause__ is None and got.value.__suppress_context__  # no chained traceback to print
    assert user_error(RuntimeError("x")) is None
    with pytest.raises(KeyError):
        _train_local(_Bug())


_GRID = textwrap.dedent("""
    import os, sys, time
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context
    from cryomonai.experiment.executors import _init_worker

    if __name__ == "__main__":
        pool = ProcessPoolExecutor(1, mp_context=get_context("spawn"), initializer=_init_worker,
                                   initargs=(1, "spawn", os.getpid()))
        print(pool.submit(os.getpid).result(), flush=True)
        pool.submit(time.sleep, 300)  # a worker busy training
        time.sleep(300)
""")


def _alive(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_a_killed_grid_leaves_no_worker_training(tmp_path):
    """``kill -9`` of the grid (a batch system's time limit, a user's ^C on a hung process) ends its workers:
    before, they trained on alone and held their run's lock."""
    script = tmp_path / "grid.py"
    script.write_text(_GRID)
    grid = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        worker = int(grid.stdout.readline())
        time.sleep(0.5)  # the sleep job is running in the worker
        assert _alive(worker)
        os.kill(grid.pid, signal.SIGKILL)
        grid.wait(30)
        deadline = time.monotonic() + 30
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(worker), f"worker {worker} outlived its grid"
    finally:
        grid.kill()
        if _alive(worker := locals().get("worker", -1)) and worker > 0:
            os.kill(worker, signal.SIGKILL)
