"""The user-facing error types of cryomonai: whose fault it is, where, and the fix.

- :class:`CryoDataError`: a problem with the user's *data* (a bad file, a wrong shape, a NaN, a
  missing label). Its message names *where* (file and, for tables, the row), *what* went wrong and
  *how to fix it*, on one line.
- :class:`ConfigError`: a mistake in a *configuration* (a preset, a bundle key, a command-line
  option): it names the file and the key, and the fix.
- :class:`GridJobError`: a training run of a grid failed in its cluster job.

Both :class:`CryoDataError` and :class:`ConfigError` are :class:`CryoError`, which the command line
prints as one line (no traceback). Programming errors (a wrong argument type inside the package, a
broken invariant) are plain Python exceptions (``TypeError``, ``AssertionError``, ``RuntimeError``)
and keep their tracebacks.

Which one, when a case is not obvious:

- Ask what the user must change. A file, table row, volume or checkpoint that is missing, damaged
  or inconsistent is data; so is the disk or host it lives on (full disk, folder locked by another
  run, not enough memory for it). A value the user chose — a bundle key, preset entry, command-line
  option, or an argument of a public function that a config sets — that is unknown, out of range,
  or contradicts another option is configuration.
- Valid data that do not fit a chosen option are a :class:`ConfigError` (a checkpoint pretrained
  with ``resnet10`` under ``--encoder rb3d``; an output folder that exists without ``overwrite``);
  an option the data cannot satisfy because the data are wrong stays a :class:`CryoDataError`.
- A bundle wired wrongly (a views pipeline the SSL step cannot use, a batch without its view keys)
  is configuration: the bundle's JSON is the user's to edit.
- Only our own code can cause a plain exception: arrays of mismatched lengths handed between our
  functions, a dataset object of the wrong type. Catch :class:`CryoError` to report both user
  errors; catch one of them only where the other cannot occur.

Example:
    >>> err = CryoDataError("a.mrc", "volume is 32x32x30, not cubic", "re-extract with a cubic box")
    >>> str(err)
    'a.mrc: volume is 32x32x30, not cubic — fix: re-extract with a cubic box'
"""

from __future__ import annotations

import os
import sys
from typing import Any

__all__ = ["CryoError", "CryoDataError", "ConfigError", "GridJobError", "as_flag", "one_line_errors", "user_error"]


class CryoError(ValueError):
    """Base of the errors a user can act on: ``"<where>: <problem> — fix: <fix>"`` on one line."""

    def __init__(self, where: str | os.PathLike, problem: str, fix: str = "") -> None:
        self.where = str(where)
        self.problem = " ".join(str(problem).split())
        self.fix = " ".join(str(fix).split())
        msg = f"{self.where}: {self.problem}"
        if self.fix:
            msg += f" — fix: {self.fix}"
        super().__init__(msg)

    def __reduce__(self):
        """Pickle by the three parts (a worker process's error reaches the grid as itself, still one line)."""
        return type(self), (self.where, self.problem, self.fix)


class CryoDataError(CryoError):
    """A problem with user data: ``"<where>: <problem> — fix: <fix>"`` on one line.

    Args:
        where: file path (optionally ``"path, row N"``) or another locator the user recognises.
        problem: what is wrong, in the user's terms.
        fix: what to do about it.
    """


class ConfigError(CryoError):
    """A mistake in a configuration (preset, bundle key, command-line option), on one line.

    Args:
        where: the file and key, e.g. ``"cpu.json, key 'fractions'"`` or ``"--workers"``.
        problem: what is wrong with the value.
        fix: the value or edit that fixes it.

    Example:
        >>> str(ConfigError("cpu.json, key 'workers'", "is 0", "give a whole number >= 1"))
        "cpu.json, key 'workers': is 0 — fix: give a whole number >= 1"
    """


class GridJobError(RuntimeError):
    """A training run of a grid failed in its cluster job: which run, which job and state, and the
    tail of the job's log (several lines: the log is what the user needs to see)."""


def user_error(err: BaseException | None) -> CryoError | None:
    """The :class:`CryoError` (data or configuration) behind ``err``, following its cause chain (MONAI's
    config parser wraps the errors of ``$`` expressions in ``RuntimeError``), or None."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, CryoError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def one_line_errors() -> None:
    """From now on, an uncaught cryomonai error ends the process with its one line on stderr
    (``cryomonai: where: problem — fix: …``, exit status 1) instead of MONAI's and Python's tracebacks;
    any other exception keeps its traceback. For runs that ``python -m monai.bundle run`` starts (the
    bundle's ``initialize``); the ``cryomonai`` command does the same itself."""
    previous = sys.excepthook
    if getattr(previous, "cryomonai_one_line", False):
        return

    def hook(kind: type[BaseException], value: BaseException, tb: Any) -> None:
        err = user_error(value)
        if err is None:
            previous(kind, value, tb)
        else:
            print(f"cryomonai: {err}", file=sys.stderr)

    hook.cryomonai_one_line = True  # type: ignore[attr-defined]
    sys.excepthook = hook


def as_flag(value: bool | str, where: str) -> bool:
    """A yes/no setting: a bool, or ``true``/``false`` (``1``/``0``, ``yes``/``no``, any case) as a command line
    gives it — ``python -m monai.bundle run … --simulate false`` passes the *string* ``"false"``, which Python
    would take as true.

    Raises:
        ConfigError: anything else (named by ``where``, e.g. ``"key 'simulate'"``).

    Example:
        >>> as_flag("false", "key 'simulate'"), as_flag(True, "key 'simulate'"), as_flag("Yes", "key 'x'")
        (False, True, True)
    """
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in ("true", "1", "yes"):
        return True
    if word in ("false", "0", "no"):
        return False
    raise ConfigError(where, f"{value!r} is not true or false", "give true or false")
