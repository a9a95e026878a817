"""The one user-facing error type of cryomonai.

Every problem a user can act on (a bad file, a wrong shape, a NaN, a missing label) is raised
as :class:`CryoDataError`, whose message is a single line naming *where* (file and, for tables,
the row), *what* went wrong and *how to fix it*.

Example:
    >>> err = CryoDataError("a.mrc", "volume is 32x32x30, not cubic", "re-extract with a cubic box")
    >>> str(err)
    'a.mrc: volume is 32x32x30, not cubic — fix: re-extract with a cubic box'
"""

from __future__ import annotations

import os

__all__ = ["CryoDataError", "GridJobError"]


class CryoDataError(ValueError):
    """A problem with user input: ``"<where>: <problem> — fix: <fix>"`` on one line.

    Args:
        where: file path (optionally ``"path, row N"``) or another locator the user recognises.
        problem: what is wrong, in the user's terms.
        fix: what to do about it.
    """

    def __init__(self, where: str | os.PathLike, problem: str, fix: str = "") -> None:
        self.where = str(where)
        self.problem = " ".join(str(problem).split())
        self.fix = " ".join(str(fix).split())
        msg = f"{self.where}: {self.problem}"
        if self.fix:
            msg += f" — fix: {self.fix}"
        super().__init__(msg)


class GridJobError(RuntimeError):
    """A training run of a grid failed in its cluster job: which run, which job and state, and the
    tail of the job's log (several lines: the log is what the user needs to see)."""
