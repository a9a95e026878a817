"""One output folder, one writer: a second run on a folder that a live run holds fails at once with a
one-line error naming the folder and the holder's pid; a lock left by a killed run is taken over.
Tested with real processes."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch
from ignite.engine import Engine

from cryomonai.engines import AtomicCheckpointSaver
from cryomonai.errors import CryoDataError
from cryomonai.experiment.grid import GridPreset, run_grid
from cryomonai.io.lock import LOCK_NAME, FolderLock, read_holder

HOLDER = textwrap.dedent("""
    import sys, time
    from cryomonai.io.lock import FolderLock
    FolderLock(sys.argv[1]).acquire()
    print("held", flush=True)
    time.sleep(120)
""")


@pytest.fixture()
def holder(tmp_path):
    """Another live process holding tmp_path/run; yields (folder, process)."""
    folder = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.stdout.readline().strip() == "held"
    yield folder, proc
    proc.kill()
    proc.wait()


def _one_line_error_naming(err: pytest.ExceptionInfo, folder, pid: int) -> None:
    message = str(err.value)
    assert "\n" not in message and str(folder) in message and f"pid {pid}" in message and "— fix:" in message, message


def test_a_live_holder_blocks_a_second_writer_and_a_killed_one_is_taken_over(holder):
    folder, proc = holder
    with pytest.raises(CryoDataError, match="in use by another cryomonai run") as err:
        FolderLock(folder).acquire()
    _one_line_error_naming(err, folder, proc.pid)
    assert read_holder(folder)["pid"] == proc.pid  # the refused run left the holder's record alone

    proc.send_signal(signal.SIGKILL)  # a killed run: its record stays, its flock is gone
    proc.wait()
    assert read_holder(folder)["pid"] == proc.pid
    with FolderLock(folder) as lock:
        assert lock.took_over["pid"] == proc.pid
        assert read_holder(folder)["pid"] == os.getpid()
        with FolderLock(folder) as inner:  # re-entrant within one process
            assert inner.held
        assert read_holder(folder)["pid"] == os.getpid()  # still held after the inner release
    assert (folder / LOCK_NAME).read_text() == ""  # a clean release leaves nothing to take over
    with FolderLock(folder) as lock:
        assert lock.took_over == {}


def test_a_second_grid_on_a_held_folder_fails_before_writing(holder):
    folder, proc = holder
    preset = GridPreset(name="x", datasets=[{"name": "d", "snr": 1.0, "n_per_class": 2, "box": 8}], methods=["random"])
    with pytest.raises(CryoDataError) as err:
        run_grid(preset, folder, progress=False)
    _one_line_error_naming(err, folder, proc.pid)
    assert sorted(p.name for p in folder.iterdir()) == [LOCK_NAME]  # nothing written


def test_a_bundle_checkpoint_folder_is_held_while_training(holder, tmp_path):
    """The checkpoint saver (the bundle's one writer, rank 0 under DDP) holds its folder from attach to
    the end of the run: refused while another process holds it, released when the run completes."""
    folder, proc = holder
    net = torch.nn.Linear(2, 2)
    busy = AtomicCheckpointSaver(str(folder), {"net": net}, save_final=True)
    with pytest.raises(CryoDataError) as err:
        busy.attach(Engine(lambda e, b: None))
    _one_line_error_naming(err, folder, proc.pid)

    mine = tmp_path / "mine"
    saver = AtomicCheckpointSaver(str(mine), {"net": net}, save_final=True)
    engine = Engine(lambda e, b: None)
    saver.attach(engine)
    assert read_holder(mine)["pid"] == os.getpid()
    other = subprocess.run([sys.executable, "-c", "import sys; from cryomonai.io.lock import FolderLock; "
                            "FolderLock(sys.argv[1]).acquire()", str(mine)], capture_output=True, text=True)
    assert other.returncode != 0 and f"pid {os.getpid()}" in other.stderr
    engine.run([0, 1], max_epochs=1)
    assert (mine / "net_final_iteration=2.pt").is_file() or any(p.suffix == ".pt" for p in mine.iterdir())
    assert (mine / LOCK_NAME).read_text() == ""  # released after the final checkpoint
    again = subprocess.run([sys.executable, "-c", "import sys, json; from cryomonai.io.lock import FolderLock; "
                            "l = FolderLock(sys.argv[1]).acquire(); print(json.dumps(l.took_over))", str(mine)],
                           capture_output=True, text=True)
    assert again.returncode == 0 and json.loads(again.stdout) == {}


NO_FLOCK_HOLDER = textwrap.dedent("""
    import errno, sys, time
    from cryomonai.io import lock
    def no_flock(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")
    lock._flock = no_flock
    lock.FolderLock(sys.argv[1]).acquire()
    print("held", flush=True)
    time.sleep(120)
""")


def _no_flock(code: int):
    def flock(fd, op):
        raise OSError(code, os.strerror(code))
    return flock


@pytest.mark.parametrize("code", [38, 37, 95])  # ENOSYS, ENOLCK, EOPNOTSUPP: a file system without flock
def test_without_flock_a_lock_file_stands_in_and_says_so(code, tmp_path, monkeypatch, caplog):
    from cryomonai.io import lock

    monkeypatch.setattr(lock, "_flock", _no_flock(code))
    folder = tmp_path / "run"
    with caplog.at_level("WARNING"), FolderLock(folder) as held:
        assert held.held and (folder / lock.SOFT_LOCK_NAME).exists()
        assert read_holder(folder)["pid"] == os.getpid()
    assert "does not support flock" in caplog.text and lock.SOFT_LOCK_NAME in caplog.text
    assert not (folder / lock.SOFT_LOCK_NAME).exists()  # released: the lock file is gone


def test_without_flock_a_second_run_is_refused_naming_the_lock_file(tmp_path, monkeypatch):
    from cryomonai.io import lock

    folder = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", NO_FLOCK_HOLDER, str(folder)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        assert proc.stdout.readline().strip() == "held"
        monkeypatch.setattr(lock, "_flock", _no_flock(37))
        with pytest.raises(CryoDataError, match="no flock") as err:
            FolderLock(folder).acquire()
        message = str(err.value)
        assert "\n" not in message and f"pid {proc.pid}" in message and str(folder / lock.SOFT_LOCK_NAME) in message
    finally:
        proc.kill()
        proc.wait()


def test_another_flock_error_is_not_called_a_busy_folder(tmp_path, monkeypatch):
    from cryomonai.io import lock

    monkeypatch.setattr(lock, "_flock", _no_flock(5))  # EIO
    with pytest.raises(CryoDataError, match="cannot lock the folder") as err:
        FolderLock(tmp_path / "run").acquire()
    assert "in use" not in str(err.value)
