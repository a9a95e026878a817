"""The ``cryomonai`` logger: timestamped lines on stderr and, optionally, in a log file.

The package logs through ``logging.getLogger(__name__)`` (every logger under ``cryomonai``). The
command line configures the ``cryomonai`` logger once (:func:`configure_logging`; ``--log_file``
also writes every line to a file); :func:`ensure_logging` gives a long library call (``run_grid``)
the same stderr lines when nobody configured logging, and leaves an application's own logging
alone otherwise; :func:`logging_to` does it for one command and puts things back after it.

Example:
    >>> import io, logging
    >>> stream = io.StringIO()
    >>> with logging_to(stream=stream):
    ...     logging.getLogger("cryomonai.example").info("3/8 runs")
    >>> stream.getvalue().split(" ", 2)[2]  # after the date and the time
    'INFO cryomonai.example: 3/8 runs\\n'
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from typing import IO

__all__ = ["LOG_FORMAT", "configure_logging", "ensure_logging", "logging_to", "reset_logging"]

#: every line: time, level, logger, message
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_OURS = "_cryomonai_handler"  # marks the handlers this module added


def _mark(handler: logging.Handler) -> logging.Handler:
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    setattr(handler, _OURS, True)
    return handler


def _file_handler(log_file: str | os.PathLike) -> logging.Handler:
    """Lines appended to ``log_file`` (its folder made): "a", not "w", as MONAI's ``logging.fileConfig``
    closes every handler, and a closed "w" handler stays closed where an "a" one opens its file again."""
    os.makedirs(os.path.dirname(os.path.abspath(log_file)), exist_ok=True)
    return _mark(logging.FileHandler(log_file, mode="a", encoding="utf-8"))


def reset_logging() -> None:
    """Remove (and close) the handlers :func:`configure_logging` added; the logger propagates again."""
    logger = logging.getLogger("cryomonai")
    for handler in [h for h in logger.handlers if getattr(h, _OURS, False)]:
        logger.removeHandler(handler)
        handler.close()  # a file handler closes its file; a stream handler leaves its stream open
    logger.propagate = True


def configure_logging(log_file: str | os.PathLike | None = None, stream: IO[str] | None = None,
                      level: int = logging.INFO) -> logging.Logger:
    """Send the ``cryomonai`` logger's lines (``LOG_FORMAT``) to ``stream`` (default stderr) and, with
    ``log_file``, append them to that file too (a resumed run adds to its log). Replaces what an
    earlier call set up; the lines do not also propagate to the root logger (MONAI's bundle runs give
    it a handler on stdout)."""
    reset_logging()
    logger = logging.getLogger("cryomonai")
    logger.addHandler(_mark(logging.StreamHandler(sys.stderr if stream is None else stream)))
    if log_file is not None:
        logger.addHandler(_file_handler(log_file))
    logger.setLevel(level)
    logger.propagate = False
    return logger


def ensure_logging() -> logging.Logger:
    """The ``cryomonai`` logger, configured as by :func:`configure_logging` if nobody configured logging
    (no handler on it or on the root logger); its level at least INFO if unset."""
    logger = logging.getLogger("cryomonai")
    if not logger.handlers and not logging.getLogger().handlers:
        return configure_logging()
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
    return logger


@contextlib.contextmanager
def logging_to(log_file: str | os.PathLike | None = None, stream: IO[str] | None = None) -> Iterator[logging.Logger]:
    """The ``cryomonai`` logger configured for one command: on ``stream`` (default stderr) unless an outer
    call already configured it, and into ``log_file`` (appended) if given; as it was afterwards (the
    handlers added here closed)."""
    logger = logging.getLogger("cryomonai")
    saved = list(logger.handlers), logger.level, logger.propagate
    try:
        if not any(getattr(h, _OURS, False) for h in logger.handlers):
            configure_logging(log_file, stream)
        elif log_file is not None:
            logger.addHandler(_file_handler(log_file))
        yield logger
    finally:
        for handler in [h for h in logger.handlers if h not in saved[0]]:
            logger.removeHandler(handler)
            handler.close()
        logger.handlers[:] = saved[0]
        logger.setLevel(saved[1])
        logger.propagate = saved[2]
