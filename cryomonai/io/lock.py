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

Example:
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> with FolderLock(folder) as lock:
    ...     lock.held
    True
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from cryomonai.errors import CryoDataError

__all__ = ["LOCK_NAME", "FolderLock", "read_holder"]

#: the lock file's name inside the locked folder
LOCK_NAME = ".cryomonai.lock"

log = logging.getLogger(__name__)

#: folders this process holds: resolved path → [file descriptor, depth]
_HELD: dict[str, list[int]] = {}


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
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise CryoDataError(self.folder, f"is in use by another cryomonai run: {_describe(read_holder(self.folder))}",
                                "wait for that run to finish (or stop it), or give this run another output folder") from None
        previous = read_holder(self.folder)
        if previous:  # its process is gone: the kernel released its flock
            self.took_over = previous
            log.warning("%s: took over the stale lock of %s (that run is no longer running)", self.folder,
                        _describe(previous))
        record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
                  "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:300] if sys.argv else "python"}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        _HELD[key] = [fd, 1]
        self._key = key
        return self

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
        fd = entry[0]
        try:
            os.ftruncate(fd, 0)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
