"""One output folder, one writer: an advisory lock per run folder.

Two runs pointed at one folder (a grid started twice, a fine-tuning resumed while the first is
still running) would interleave checkpoints and tables. :class:`FolderLock` holds an exclusive
``fcntl.flock`` on ``<folder>/.cryomonai.lock`` for as long as a run writes there; the file records
the holder (pid, host, command, start time) so that a second run fails at once with a one-line
error naming the folder and the holder's pid. The kernel drops a ``flock`` when its process dies,
so a lock left by a killed run (SIGKILL, a crash, a lost node) is stale by construction: the next
run takes it over and says whose it was. Within one process the lock is re-entrant (the grid holds
its folder while its bundle runs hold their own run folders). The lock file itself stays (emptied)
when released: unlinking it would let two processes lock two different files of one name.

Linux/macOS (``fcntl``); on network file systems ``flock`` is as reliable as the server makes it.
Where the file system does not support ``flock`` at all (some Lustre and NFS mounts answer
``ENOSYS``, ``ENOLCK`` or ``EOPNOTSUPP``), the lock falls back to a lock *file*
(``filelock.SoftFileLock`` on ``<folder>/.cryomonai.softlock``: it exists while a run holds the
folder) and says so in a warning. Such a lock cannot tell that its holder died: a run killed there
leaves it behind, and the next run's error says which file to remove.

Example:
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> with FolderLock(folder) as lock:
    ...     lock.held
    True
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

import filelock

from cryomonai.errors import CryoDataError

__all__ = ["LOCK_NAME", "SOFT_LOCK_NAME", "FolderLock", "read_holder"]

#: the lock file's name inside the locked folder
LOCK_NAME = ".cryomonai.lock"
#: the fallback lock file where the file system has no ``flock`` (it exists while a run holds the folder)
SOFT_LOCK_NAME = ".cryomonai.softlock"
#: ``flock`` errors that mean "this file system cannot lock", not "someone else holds it"
NO_FLOCK = {errno.ENOSYS, errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP}

log = logging.getLogger(__name__)

#: folders this process holds: resolved path → [file descriptor, depth, soft lock or None]
_HELD: dict[str, list[Any]] = {}


def read_holder(folder: str | os.PathLike) -> dict[str, Any]:
    """What the lock file of ``folder`` says about its (last) holder; ``{}`` if nothing."""
    try:
        return json.loads((Path(folder) / LOCK_NAME).read_text() or "{}")
    except (OSError, ValueError):
        return {}


def _describe(holder: dict[str, Any]) -> str:
    if not holder:
        return "another process"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("started", 0)))
    return f"pid {holder.get('pid', '?')} on {holder.get('host', '?')} since {since} ({holder.get('command', '?')})"


class FolderLock:
    """An exclusive, re-entrant (per process) lock on a run folder; see the module docstring.

    Args:
        folder: the folder (created if missing).

    Attributes:
        took_over: the holder record of a stale lock this lock replaced (``{}`` if none).
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self.took_over: dict[str, Any] = {}
        self._key: str | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock now."""
        return self._key is not None

    def acquire(self) -> FolderLock:
        """Take the lock, or raise :class:`CryoDataError` naming the folder and the live holder."""
        if self.held:
            return self
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise CryoDataError(self.folder, f"cannot create the folder ({err.strerror})",
                                "choose an output folder you may write to") from None
        key = str(self.folder.resolve())
        if key in _HELD:  # this process holds it already (the grid around its bundle runs)
            _HELD[key][1] += 1
            self._key = key
            return self
        path = self.folder / LOCK_NAME
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise CryoDataError(path, f"cannot open the lock file ({err.strerror})",
                                "choose an output folder you may write to") from None
        soft = None
        try:
            _flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in NO_FLOCK:
                os.close(fd)
                if err.errno in (errno.EAGAIN, errno.EACCES):
                    raise CryoDataError(self.folder, f"is in use by another cryomonai run: {_describe(read_holder(self.folder))}",
                                        "wait for that run to finish (or stop it), or give this run another output folder") from None
                raise CryoDataError(path, f"cannot lock the folder ({err.strerror})",
                                    "choose an output folder on a file system you may write to") from None
            soft = self._soft_lock(fd, err)
        previous = read_holder(self.folder)
        if previous and soft is None:  # its process is gone: the kernel released its flock
            self.took_over = previous
            log.warning("%s: took over the stale lock of %s (that run is no longer running)", self.folder,
                        _describe(previous))
        record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
                  "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:300] if sys.argv else "python"}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        _HELD[key] = [fd, 1, soft]
        self._key = key
        return self

    def _soft_lock(self, fd: int, err: OSError) -> filelock.SoftFileLock:
        """The lock file instead of ``flock`` (which failed with ``err``); a one-line error if it exists."""
        soft = filelock.SoftFileLock(self.folder / SOFT_LOCK_NAME, timeout=0)
        try:
            soft.acquire()
        except filelock.Timeout:
            os.close(fd)
            raise CryoDataError(self.folder, f"is in use by another cryomonai run ({_describe(read_holder(self.folder))}); "
                                f"this file system has no flock ({err.strerror}), so a lock left by a killed run stays",
                                f"wait for that run, or if none is running here remove {self.folder / SOFT_LOCK_NAME}") from None
        log.warning("%s: the file system does not support flock (%s); locked with the lock file %s instead",
                    self.folder, err.strerror, SOFT_LOCK_NAME)
        return soft

    def release(self) -> None:
        """Give the lock back (the outermost release in this process empties the file and unlocks it)."""
        if not self.held:
            return
        key, self._key = self._key, None
        entry = _HELD[key]
        entry[1] -= 1
        if entry[1] > 0:
            return
        del _HELD[key]
        fd, soft = entry[0], entry[2]
        try:
            os.ftruncate(fd, 0)
        finally:
            if soft is None:
                _flock(fd, fcntl.LOCK_UN)
            else:
                soft.release()
            os.close(fd)

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _flock(fd: int, operation: int) -> None:
    """``fcntl.flock`` (one place, so that a test can stand in a file system without it)."""
    fcntl.flock(fd, operation)
