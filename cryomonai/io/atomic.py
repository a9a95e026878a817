"""Atomic file writes: a reader (or a crash) sees the old file or the new one, never a torn one.

Everything in :mod:`cryomonai.io` and the training cache writes through these two helpers. The
new content goes to a hidden temporary file *in the same directory* (so :func:`os.replace` is a
rename within one file system, which POSIX and Windows make atomic), is flushed and ``fsync``-ed,
and only then replaces the target; the folder is ``fsync``-ed after the rename (where the system
allows it), so the new name survives a power cut. If the writer raises, the temporary file is
removed and the old file is untouched. A process killed mid-write (``SIGKILL``, out of memory)
cannot clean up: it leaves the old target and a stray ``.<name>.<8 hex>.tmp``, which no reader
of a ``*.mrc``/``*.star``/``*.pt`` name picks up, and which may be deleted.

Example:
    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "notes.txt"
    >>> with atomic_write(target, "w") as f:
    ...     _ = f.write("hello")
    >>> target.read_text()
    'hello'
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from cryomonai.errors import CryoDataError

__all__ = ["atomic_path", "atomic_write", "atomic_write_texts"]


#: errors of a write that ran out of room: a full disk, a quota, a file-size limit (``ulimit -f``)
_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def _temp_name(path: Path) -> Path:
    """A hidden, unique sibling of ``path``: ``.<name>.<8 hex>.tmp``."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")


def _fsync_file(path: Path) -> None:
    """Flush ``path``'s content to disk (so a power cut cannot leave an empty renamed file)."""
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(folder: Path) -> None:
    """Flush a folder's entries (the rename) to disk; a no-op where folders cannot be opened (Windows)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _megabytes(n: float) -> str:
    return f"{n / 1e6:.1f} MB"


def _full_disk_error(path: Path, tmp: Path, err: OSError, size: int | None) -> CryoDataError:
    """The one-line error of a write that ran out of space: the file, what it needed, what was free."""
    written = tmp.stat().st_size if tmp.exists() else 0
    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        free = None
    need = size if size is not None else (written or None)
    needs = (f"it needs {_megabytes(size)}" if size is not None else
             f"it needs more than the {_megabytes(written)} written" if written else "its size is unknown")
    where = f", {_megabytes(free)} free there" if free is not None else ""
    limit = " (a file-size limit: ulimit -f)" if err.errno == errno.EFBIG else ""
    room = f"at least {_megabytes(need * 1.1)}" if need else "space"
    return CryoDataError(path, f"ran out of space while writing{limit} ({err.strerror or err}): {needs}{where}; "
                         "the previous file is kept", f"free {room} on that disk (or write elsewhere) and rerun")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, size: int | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it atomically becomes ``path``.

    For libraries that insist on a file *name* rather than a file object (``mrcfile.new``,
    ``numpy.lib.format.open_memmap``). The temporary file does not exist yet when yielded; the
    caller creates it. If the body raises, the temporary file (if created) is deleted and
    ``path`` keeps its old content.

    Args:
        path: the final file. Its parent directory must exist.
        size: the bytes the file will take, if known: a full disk's error then says how much is needed.

    Yields:
        the temporary path to write to.

    Raises:
        CryoDataError: naming ``path``, when the file system refuses the write (no such folder,
            a file where a folder should be, no permission); for a full disk, a quota or a
            file-size limit (``ENOSPC``, ``EDQUOT``, ``EFBIG``) it also says how much space the file
            needed and how much was free. The previous file is untouched either way.
    """
    path = Path(path)
    tmp = _temp_name(path)
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"{tmp}: the writer did not create the temporary file")
        _fsync_file(tmp)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as err:
        if err.errno in _FULL:  # a full disk names no file
            raise _full_disk_error(path, tmp, err, size) from err
        if str(err.filename) not in (str(tmp), str(path)):  # not about this file: not ours
            raise
        raise CryoDataError(path, f"cannot write the file ({err.strerror or err})",
                            "write to an existing folder you may write to, with free disk space") from err
    finally:
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):  # never created
            tmp.unlink()


@contextlib.contextmanager
def atomic_write(
    path: str | os.PathLike, mode: str = "wb", encoding: str | None = None, newline: str | None = None,
    size: int | None = None,
) -> Iterator[IO[Any]]:
    """Open a temporary file for writing; on success it atomically replaces ``path``.

    Args:
        path: the final file. Its parent directory must exist.
        mode: ``"wb"`` (bytes) or ``"w"``/``"wt"`` (text, UTF-8 unless ``encoding`` says otherwise).
        encoding: text encoding (text mode only).
        newline: as for :func:`open` (use ``""`` for CSV written by :mod:`csv` or pandas).
        size: the bytes to be written, if known (for a full disk's error message).

    Yields:
        the open file object. It is flushed, ``fsync``-ed and closed before the rename.

    Raises:
        ValueError: for a mode other than a plain write mode.
    """
    if mode not in ("w", "wt", "wb"):
        raise ValueError(f"atomic_write supports modes 'w', 'wt' and 'wb', got {mode!r}")
    if "b" not in mode and encoding is None:
        encoding = "utf-8"
    with atomic_path(path, size) as tmp:
        # "x": the uuid name is fresh, so exclusive creation only guards against a collision
        with open(tmp, mode.replace("w", "x"), encoding=encoding, newline=newline) as f:
            yield f


def atomic_write_texts(texts: Mapping[str | os.PathLike, str]) -> list[Path]:
    """Write several text files as one set: every file is written (to its temporary name) before any is renamed.

    A writer that fails (a full disk, no permission) leaves every target as it was; only a crash
    during the final renames (a few system calls) can leave some files new and some old.

    Args:
        texts: target file → its text (UTF-8). The folders must exist.

    Returns:
        the targets, in the order given.

    Example:
        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> [p.name for p in atomic_write_texts({folder / "a.txt": "1", folder / "b.txt": "2"})]
        ['a.txt', 'b.txt']
        >>> (folder / "b.txt").read_text()
        '2'
    """
    targets = [Path(p) for p in texts]
    with contextlib.ExitStack() as stack:  # on exit (no error): each temporary file renamed onto its target
        for path, text in zip(targets, texts.values()):
            f = stack.enter_context(atomic_write(path, "w", newline="", size=len(text.encode())))
            f.write(text)
    return targets
