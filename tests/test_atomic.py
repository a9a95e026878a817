"""A writer killed mid-write leaves the old file or the complete new one — never a torn file.

Three writers run in a child process that writes version after version of one large file until
it is killed: a checkpoint through :class:`cryomonai.engines.AtomicCheckpointSaver` (MONAI's
``CheckpointSaver`` → Ignite's ``Checkpoint`` → ``torch.save``, on an Ignite engine), a particle
table through :func:`cryomonai.io.write_particle_table` (STAR) and a volume through
:func:`cryomonai.io.write_mrc`. Each version is recognisable (the checkpoint's epoch, the table's
``x``, the MRC voxel size) and has a known content. For every kill (seeded: which write, how long
into it) the parent freezes the child with ``SIGSTOP`` while a temporary file of the write exists
(so the kill is provably *mid-write*), kills it with ``SIGKILL`` and checks that the target is
absent (nothing finished yet), the previous version or the new one, complete and equal to it, and
that the stray temporary files are invisible to the readers (``*.pt``/``*.star``/``*.mrc`` globs,
:func:`~cryomonai.engines.latest_checkpoint`).

MONAI's own ``CheckpointSaver`` is not atomic (it builds Ignite's ``DiskSaver`` with
``atomic=False``, and Ignite deletes the previous checkpoint before writing the next), which is
why the bundle should name ``cryomonai.engines.AtomicCheckpointSaver``.
"""

from __future__ import annotations

import functools
import multiprocessing as mp
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from ignite.engine import Engine, Events
from monai.handlers import CheckpointSaver

from cryomonai.engines import AtomicCheckpointSaver, RunInfo, latest_checkpoint, resume_handlers
from cryomonai.errors import ConfigError
from cryomonai.io import read_mrc, read_particle_table, write_mrc, write_particle_table
from cryomonai.io.lock import LOCK_NAME

KILLS = 3  # kills per writer
ROWS = 20_000  # rows of the STAR table (≈ 0.8 MB)
VOLUME = (64, 128, 128)  # (z, y, x) of the MRC volume (4 MB of float32)
BLOB = 4_000_000  # floats in the checkpoint (16 MB)


@functools.cache
def _patterns() -> tuple[list[np.ndarray], list[torch.Tensor]]:
    """The two alternating contents of the MRC volumes and of the checkpoint (made before forking)."""
    volumes = [np.random.default_rng(k).normal(size=VOLUME).astype(np.float32) for k in range(2)]
    blobs = [torch.from_numpy(np.random.default_rng(10 + k).normal(size=BLOB).astype(np.float32)) for k in range(2)]
    return volumes, blobs


# ---- the writers (run in the child; no parallel torch kernel runs there, so forking is safe) ----


class _Blob:
    """A checkpointable object whose state is version ``v``: ``{"version": v, "data": blobs[v % 2]}``."""

    def __init__(self) -> None:
        self.version = 0

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"version": torch.tensor(self.version), "data": _patterns()[1][self.version % 2]}

    def load_state_dict(self, state: dict) -> None:
        self.version = int(state["version"])


def _table(version: int) -> pd.DataFrame:
    """A coordinate table (picks) whose ``x`` is ``version`` on every row and ``y`` the row number."""
    return pd.DataFrame({"tomogram": "t.mrc", "x": float(version), "y": np.arange(ROWS, dtype=float), "z": 0.0,
                         "label": np.where(np.arange(ROWS) % 2 == 0, "a", "b")})


def _write_versions(kind: str, target: Path, first: int, started: Any, done: Any) -> None:
    """Write versions ``first``, ``first + 1`` … of ``kind`` to ``target`` until killed.

    The checkpoint's version is the epoch: the engine resumes at epoch ``first`` (as a bundle's
    ``--resume`` does) and saves ``ckpt_checkpoint_epoch=<version>.pt`` after every epoch.
    """
    if kind == "checkpoint":
        blob, engine = _Blob(), Engine(lambda engine, batch: None)
        engine.load_state_dict({"epoch": first - 1, "epoch_length": 1, "max_epochs": 10**9})

        @engine.on(Events.EPOCH_STARTED)
        def _start(e: Engine) -> None:
            blob.version = started.value = e.state.epoch

        save_dict = {"blob": blob, "run_info": RunInfo(task="test")}  # two objects, as in a bundle: one dict per file
        AtomicCheckpointSaver(str(target), save_dict, file_prefix="ckpt", save_interval=1, n_saved=1).attach(engine)
        engine.add_event_handler(Events.EPOCH_COMPLETED, lambda e: setattr(done, "value", blob.version))
        engine.run([0])
    version = first
    while True:
        started.value = version
        if kind == "star":
            write_particle_table(_table(version), target, ["a", "b"])
        else:
            write_mrc(target, _patterns()[0][version % 2], voxel_size=1.0 + version)
        done.value = version
        version += 1


# ---- reading a version back -----------------------------------------------------------------------


def _read_version(kind: str, path: Path) -> int:
    """The version held by the file at ``path``; asserts the file is complete and exactly that version."""
    if kind == "checkpoint":
        state = torch.load(path, weights_only=True)["blob"]
        version = int(state["version"])
        assert path.name == f"ckpt_checkpoint_epoch={version}.pt"
        assert torch.equal(state["data"], _patterns()[1][version % 2])
    elif kind == "star":
        df = read_particle_table(path, check_files=False).df
        version = int(df["x"].iloc[0])
        assert len(df) == ROWS and (df["x"] == version).all() and (df["y"].to_numpy() == np.arange(ROWS)).all()
    else:
        volume, voxel = read_mrc(path)
        version = round(voxel - 1.0)
        assert np.array_equal(volume, _patterns()[0][version % 2])
    return version


def _temps(folder: Path) -> set[str]:
    """The temporary files of :func:`cryomonai.io.atomic_write` in ``folder``."""
    return {p.name for p in folder.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp")}


def _kill_mid_write(proc: Any, folder: Path, before: set[str], nth: int, delay: float) -> None:
    """SIGKILL the writer during its ``nth`` write or a later one, provably mid-write.

    After the ``nth`` new temporary file appeared and ``delay`` seconds, the child is frozen
    (``SIGSTOP``, waited for); if one of its temporary files exists it is in the middle of a write
    and is killed there, else it is let go (``SIGCONT``) and caught at a later write.
    """
    deadline, seen = time.monotonic() + 30, set()
    while time.monotonic() < deadline and proc.is_alive():
        seen |= _temps(folder) - before
        if len(seen) >= nth:
            time.sleep(delay)
            os.kill(proc.pid, signal.SIGSTOP)
            _, status = os.waitpid(proc.pid, os.WUNTRACED)  # returns once the child is stopped
            assert os.WIFSTOPPED(status), f"the writer ended (status {status})"
            if _temps(folder) - before:
                break
            os.kill(proc.pid, signal.SIGCONT)
        time.sleep(0.0002)
    else:
        pytest.fail(f"the writer {'wrote no temporary file' if proc.is_alive() else 'died'} ({proc.exitcode})")
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(timeout=30)
    assert proc.exitcode == -signal.SIGKILL


WRITERS: dict[str, Callable[[Path], Path]] = {
    "checkpoint": lambda root: root,  # the saver's folder
    "star": lambda root: root / "particles.star",
    "mrc": lambda root: root / "volume.mrc",
}
SUFFIX = {"checkpoint": "*.pt", "star": "*.star", "mrc": "*.mrc"}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the killed writers are forked children")
@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_a_writer_killed_mid_write_leaves_the_old_or_the_new_file(kind: str, tmp_path: Path) -> None:
    _patterns()  # made here, inherited by the children
    ctx = mp.get_context("fork")
    target = WRITERS[kind](tmp_path)
    rng = np.random.default_rng(0)
    current: int | None = None  # the version on disk (None: nothing written yet)
    first = 1
    for _ in range(KILLS):
        started, done = ctx.Value("q", -1), ctx.Value("q", -1)
        proc = ctx.Process(target=_write_versions, args=(kind, target, first, started, done), daemon=True)
        before = _temps(tmp_path)
        proc.start()
        try:
            _kill_mid_write(proc, tmp_path, before, nth=int(rng.integers(1, 4)), delay=float(rng.uniform(0, 0.03)))
        finally:
            if proc.is_alive():
                proc.kill()
                proc.join()
        assert len(_temps(tmp_path)) == len(before) + 1  # the killed write's temporary file: left, never read
        allowed = {current, started.value} | ({done.value} if done.value >= first else set())
        visible = sorted(tmp_path.glob(SUFFIX[kind]))
        if kind == "checkpoint":
            assert all(_read_version(kind, p) >= 1 for p in visible)  # every checkpoint on disk is complete
            latest = latest_checkpoint(tmp_path, "ckpt")
            assert (latest is None) == (not visible)
            current = _read_version(kind, latest) if latest is not None else None
        else:
            assert visible in ([], [target])
            current = _read_version(kind, target) if visible else None
        assert current in allowed  # the old version or the new one …
        assert current is not None or done.value < first  # … and absent only if no write ever finished
        first = started.value + 1  # the next child writes new versions


# ---- the checkpoint saver, in one process --------------------------------------------------------


class _Probe:
    """Pickled inside ``torch.save``: records which checkpoint files exist while the new one is written."""

    seen: list[list[str]] = []

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def __reduce__(self) -> tuple:
        _Probe.seen.append(sorted(p.name for p in self.folder.glob("*.pt")))
        return (str, ("probe",))


class _Probed:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def state_dict(self) -> dict[str, Any]:
        return {"probe": _Probe(self.folder)}

    def load_state_dict(self, state: dict) -> None:
        pass


def _train(saver: Any, epochs: int = 3) -> Engine:
    engine = Engine(lambda engine, batch: None)
    saver.attach(engine)
    engine.run([0, 1], max_epochs=epochs)
    return engine


def test_atomic_checkpoint_saver_writes_monais_files_and_keeps_the_old_one_until_the_new_is_written(
    tmp_path: Path,
) -> None:
    net = torch.nn.Linear(3, 2)
    kwargs = dict(file_prefix="run", save_interval=1, n_saved=1, save_final=True, final_filename="run.pt")
    save_dict = {"model": net, "run_info": RunInfo(task="test")}
    _train(CheckpointSaver(str(tmp_path / "monai"), save_dict, **kwargs))
    _train(AtomicCheckpointSaver(str(tmp_path / "ours"), save_dict, **kwargs))
    names = sorted(p.name for p in (tmp_path / "monai").iterdir())
    assert names == ["run.pt", "run_checkpoint_epoch=3.pt"]
    # no temporary file left either (the saver's folder lock, .cryomonai.lock, is ours alone)
    assert sorted(p.name for p in (tmp_path / "ours").iterdir() if p.name != LOCK_NAME) == names
    for name in names:
        ours = torch.load(tmp_path / "ours" / name, weights_only=True)["model"]
        assert all(torch.equal(v, net.state_dict()[k]) for k, v in ours.items())

    _Probe.seen.clear()
    folder = tmp_path / "probed"
    saver = AtomicCheckpointSaver(str(folder), {"p": _Probed(folder), "info": RunInfo()}, file_prefix="p",
                                  save_interval=1, n_saved=1)
    _train(saver, epochs=3)
    # while epoch n is being written, epoch n-1 is still there (deleted only once n is complete)
    assert _Probe.seen == [[], ["p_checkpoint_epoch=1.pt"], ["p_checkpoint_epoch=2.pt"]]
    assert sorted(p.name for p in folder.iterdir() if p.name != LOCK_NAME) == ["p_checkpoint_epoch=3.pt"]


def test_a_failed_save_leaves_the_previous_checkpoint(tmp_path: Path) -> None:
    class Failing:
        fail = False

        def state_dict(self) -> dict:
            return {"x": (lambda: None) if Failing.fail else torch.ones(2)}  # a lambda cannot be pickled

        def load_state_dict(self, state: dict) -> None:
            pass

    engine = Engine(lambda engine, batch: setattr(Failing, "fail", engine.state.epoch == 2))
    saver = AtomicCheckpointSaver(str(tmp_path), {"f": Failing(), "info": RunInfo()}, file_prefix="f", save_interval=1)
    saver.attach(engine)
    with pytest.raises(Exception, match="pickle|lambda"):
        engine.run([0], max_epochs=2)
    assert [p.name for p in tmp_path.iterdir() if p.name != LOCK_NAME] == ["f_checkpoint_epoch=1.pt"]
    assert torch.equal(torch.load(tmp_path / "f_checkpoint_epoch=1.pt", weights_only=True)["f"]["x"], torch.ones(2))


def test_resume_never_picks_a_stray_temporary_file(tmp_path: Path) -> None:
    state = {"model": {"w": torch.arange(1000.0)}, "run_info": {"task": "pretrain"}}
    torch.save(state, tmp_path / "pretrain_checkpoint_epoch=1.pt")
    (tmp_path / ".pretrain_checkpoint_epoch=2.pt.0123abcd.tmp").write_bytes(b"PK\x03\x04")  # a killed write
    assert latest_checkpoint(tmp_path, "pretrain") == tmp_path / "pretrain_checkpoint_epoch=1.pt"
    (loader,) = resume_handlers(True, tmp_path, "pretrain", {"run_info": RunInfo(task="pretrain")})
    assert Path(loader.load_path).name == "pretrain_checkpoint_epoch=1.pt"
    (tmp_path / "pretrain_checkpoint_epoch=1.pt").unlink()
    with pytest.raises(ConfigError, match="no pretrain_checkpoint_epoch"):
        resume_handlers(True, tmp_path, "pretrain", {})
