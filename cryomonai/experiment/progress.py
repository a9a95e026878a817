"""The grid's progress: one bar over all its runs, with an ETA from the runs finished so far.

**A unit is one run** the grid still has to do: a pretraining, a recipe-selection fine-tuning, a
cell fine-tuning, or a cell evaluation (validation, the test split, the readouts and the
``results.csv`` row). :func:`count_runs` counts them as ``docs/records/slurm/count_jobs.py`` counts
jobs, plus one evaluation per cell, minus what is already done (a resumed grid counts only what is
left; a selection run of the chosen recipe is its repeat-0 cell's fine-tuning, counted once).

**The ETA** weighs the kinds of run, which differ in cost (a pretraining takes many fine-tunings'
time, an evaluation a few seconds): a run left of kind *k* is expected to take the mean duration of
the runs of kind *k* finished so far (while none of *k* is, the mean of the cheapest kind finished:
later stages cost less, an evaluation less than a fine-tuning, a fine-tuning less than a
pretraining; a grid whose evaluations all wait for its selection runs would otherwise price each
evaluation at a pretraining's share and double its ETA), and the grid goes
on at the pace it has had so far, so ``ETA = now + elapsed × work left / work done``. The ratio
``elapsed / work done`` takes in what the durations miss: several runs at once in a pool (< 1), the
driver's own time between runs (> 1). Durations are those of the bundle runs (``setup + compute``,
reported by the worker or job), and an evaluation's is its own time in the driver. The ETA is a
forecast from past pace, no more: it is blank until a run has finished.

**Where it shows**: on a terminal (``stream.isatty()``), one tqdm bar ``k/n runs`` with the ETA;
elsewhere (a SLURM log, a pipe, a file) no bar but one timestamped log line per finished run,
``[grid <name>] k/n runs, ETA hh:mm (h:mm:ss left): <the run>``, through the ``cryomonai`` logger.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from cryomonai.experiment.preset import GridCell
from cryomonai.io.atomic import atomic_write

__all__ = ["KINDS", "GridProgress", "bundle_seconds", "count_runs", "forecast", "read_pace", "run_label", "runs_by_kind"]

log = logging.getLogger(__name__)

#: the kinds of run, each with its own mean duration (selection and cell fine-tunings are both ``finetune``)
KINDS = ("pretrain", "finetune", "evaluate")


def count_runs(runner: Any, todo: Iterable[Any]) -> dict[str, int]:
    """The runs a grid (``runner``: a :class:`~cryomonai.experiment.grid.GridRunner`) still does for the
    cells ``todo``: ``{"pretrain", "selection", "finetune", "evaluate"}``.

    A dataset of ``todo`` chooses the recipe of every method (the recipes × selection fractions neither
    in ``selection.csv`` nor trained, and the repeat-0 pretraining they need); a cell needs its pretraining (unless
    ``random``), its fine-tuning (unless done, or done as a selection run) and its evaluation.
    """
    preset, todo = runner.preset, list(todo)
    recipes = list(runner.recipe_overrides())  # with the recipes added at the edge of the space so far
    fractions = {round(float(f), 6) for f in preset.selection_cells()} if len(preset.recipe_overrides()) > 1 else set()
    pretrain: set[tuple[str, str, int]] = set()
    selection, selecting = 0, set()
    for dataset in dict.fromkeys(c.dataset for c in todo):
        for method in preset.methods:
            tried = runner.tables.tried(dataset, method) if fractions else set()
            left = [(r, f) for r, f in runner.selection_runs(dataset, method) if (r, round(f, 6)) not in tried
                    and not runner.trainer.finetuned(GridCell(dataset, method, f, 0), r)]  # trained, not yet chosen
            if left:
                selecting.add((dataset, method))
                selection += len(left)
                pretrain.add((dataset, method, 0))
    finetune = 0
    for cell in todo:
        pretrain.add((cell.dataset, cell.method, cell.repeat))
        if cell.repeat == 0 and round(float(cell.label_fraction), 6) in fractions:
            continue  # trained as a selection run (counted there, or done)
        if not any(runner.trainer.finetuned(cell, r) for r in recipes):
            finetune += 1
    seed = preset.seed
    n_pretrain = sum(1 for d, m, r in pretrain if m != "random" and not runner.trainer.pretrained(d, m, seed + r))
    return {"pretrain": n_pretrain, "selection": selection, "finetune": finetune, "evaluate": len(todo)}


def run_label(kind: str, *args: Any) -> str:
    """A training run in words: ``("pretrain", dataset, method, seed)`` or ``("finetune", cell, recipe)``."""
    if kind == "pretrain":
        return "pretrain {1} on {0}, seed {2}".format(*args)
    cell, recipe = args
    return (f"fine-tune {cell.method} on {cell.dataset}, {100 * cell.label_fraction:g} % labels, repeat {cell.repeat}, "
            f"recipe {recipe}")


def bundle_seconds(seconds: dict[str, float] | None) -> float:
    """A bundle run's duration from its ``{"setup", "compute", …}`` seconds (0 for a run already done: None)."""
    return 0.0 if seconds is None else float(seconds.get("setup", 0.0)) + float(seconds.get("compute", 0.0))


def runs_by_kind(counts: dict[str, int]) -> dict[str, int]:
    """:func:`count_runs`' counts per kind of :data:`KINDS` (a selection run is a fine-tuning)."""
    left = dict.fromkeys(KINDS, 0)
    for kind, n in counts.items():
        left["finetune" if kind == "selection" else kind] += int(n)
    return left


def forecast(work: dict[str, tuple[float, int]], left: dict[str, int], elapsed: float) -> float | None:
    """Seconds of running time until the runs ``left`` (per kind) are done, at the pace of ``work`` (per kind:
    seconds and runs finished) done in ``elapsed`` seconds of the grid's working time (see the module
    docstring); None before a run has finished."""
    work_done, runs = sum(s for s, _ in work.values()), sum(n for _, n in work.values())
    if not runs or work_done <= 0:
        return None
    seen = {k: s / n for k, (s, n) in work.items() if n}
    cheapest = min(seen.values())  # a kind not seen yet: a later stage, no dearer than the cheapest seen
    work_left = sum(max(n, 0) * seen.get(k, cheapest) for k, n in left.items())
    return elapsed * work_left / work_done


def read_pace(state: str | os.PathLike) -> tuple[dict[str, tuple[float, int]], float]:
    """A grid's pace from its ``progress.json``: per kind (seconds, runs) finished, and its working wall time.

    Raises:
        OSError, ValueError, KeyError, TypeError, AttributeError: the file is missing or unreadable.
    """
    state = json.loads(Path(state).read_text(encoding="utf-8"))
    return {k: (float(v["seconds"]), int(v["runs"])) for k, v in state["kinds"].items() if k in KINDS}, float(state["elapsed"])


def _clock(seconds: float, now: float) -> str:
    """``hh:mm`` of ``now + seconds`` (with ``+Nd`` when it is another day) and the time left."""
    then, today = datetime.datetime.fromtimestamp(now + seconds), datetime.datetime.fromtimestamp(now)
    days = (then.date() - today.date()).days
    left = datetime.timedelta(seconds=round(seconds))
    return f"{then:%H:%M}{f' +{days}d' if days else ''} ({left} left)"


class GridProgress:
    """Counts a grid's finished runs against ``counts`` (from :func:`count_runs`); see the module docstring.

    Args:
        name: the grid's name (the preset's), in every line.
        counts: runs to do per kind (``selection`` counts as ``finetune``).
        stream: where the bar goes (default stderr); not a terminal: log lines instead.
        clock: seconds, monotonic (a test's fake clock).
        state: a JSON file that carries the pace over to the next invocation (the grid's ``progress.json``);
            read here if it exists, rewritten (atomically) after every finished run.
    """

    def __init__(self, name: str, counts: dict[str, int], stream: IO[str] | None = None,
                 clock: Callable[[], float] = time.monotonic, state: str | os.PathLike | None = None) -> None:
        self.name, self.clock, self.state = name, clock, state
        self.left = runs_by_kind(counts)
        self.total, self.n = sum(self.left.values()), 0
        self.seconds: dict[str, list[float]] = {k: [] for k in KINDS}
        self.before, self.before_elapsed = self._read_state()  # earlier invocations: {kind: (seconds, runs)}, wall s
        self.start = self.last = clock()
        stream = sys.stderr if stream is None else stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.bar = tqdm(total=self.total, unit="run", file=stream, disable=not self.tty, dynamic_ncols=True,
                        desc=f"grid {name}", bar_format="{desc}: {n_fmt}/{total_fmt} runs |{bar}| {elapsed}{postfix}")
        self._redirect = contextlib.ExitStack()
        if self.tty:  # log lines above the bar, not through it
            self._redirect.enter_context(logging_redirect_tqdm([logging.getLogger("cryomonai")], tqdm_class=tqdm))
        eta = self.eta()
        if eta is not None and self.total:  # a resumed grid: its pace so far, before a run of this invocation ends
            when = _clock(eta, time.time())
            if self.tty:
                self.bar.set_postfix_str(f"ETA {when}")
            else:
                log.info("[grid %s] resumed: %d runs to do, ETA %s", self.name, self.total, when)

    def _read_state(self) -> tuple[dict[str, tuple[float, int]], float]:
        """The pace of earlier invocations from ``state`` (nothing if there is none; a warning if unreadable)."""
        if self.state is None or not os.path.exists(self.state):
            return {}, 0.0
        try:
            return read_pace(self.state)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
            log.warning("%s: cannot read the grid's earlier pace (%s: %s); the ETA starts afresh (delete the file to "
                        "silence this)", self.state, type(err).__name__, err)
            return {}, 0.0

    def _work(self) -> dict[str, tuple[float, int]]:
        """Per kind: seconds and runs finished, this invocation's and earlier ones'."""
        earlier = {k: self.before.get(k, (0.0, 0)) for k in KINDS}
        return {k: (sum(self.seconds[k]) + earlier[k][0], len(self.seconds[k]) + earlier[k][1]) for k in KINDS}

    def _write_state(self, elapsed: float) -> None:
        """Store the pace so far (``elapsed``: the grid's working wall time) for the next invocation."""
        if self.state is None:
            return
        kinds = {k: {"seconds": round(s, 3), "runs": n} for k, (s, n) in self._work().items()}
        with atomic_write(self.state, "w") as fh:
            json.dump({"elapsed": round(elapsed, 3), "kinds": kinds}, fh, indent=1)

    def __enter__(self) -> GridProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Close the bar (it stays on screen) and give the log lines their handlers back."""
        self.bar.close()
        self._redirect.close()

    def add(self, kind: str, n: int) -> None:
        """``n`` more runs of ``kind`` to do (selection runs of recipes added at the edge of the space)."""
        self.left["finetune" if kind == "selection" else kind] += n
        self.total += n
        self.bar.total = self.total
        self.bar.refresh()

    def eta(self) -> float | None:
        """Seconds until every run is done (see the module docstring); None before the grid's first run finishes."""
        return forecast(self._work(), self.left, self.before_elapsed + self.clock() - self.start)

    def done(self, kind: str, label: str, seconds: float | None = None, started: float | None = None) -> None:
        """A run of ``kind`` (:data:`KINDS`) finished: ``seconds`` long (as the bundle measured it), or,
        without, since ``started`` (this ``clock``) or the last finished run, whichever is later."""
        now = self.clock()
        if seconds is None:
            seconds = now - max(self.last, self.start if started is None else started)
        self.last = now
        self.seconds[kind].append(max(float(seconds), 0.0))
        self.left[kind] -= 1
        self.n += 1
        self._write_state(self.before_elapsed + now - self.start)
        eta = self.eta()
        when = "--:--" if eta is None else _clock(eta, time.time())
        if self.tty:
            self.bar.set_postfix_str(f"ETA {when}", refresh=False)
            self.bar.update(1)
        else:
            log.info("[grid %s] %d/%d runs, ETA %s: %s", self.name, self.n, max(self.total, self.n), when, label)
