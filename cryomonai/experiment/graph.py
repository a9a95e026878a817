"""A grid's run graph: pretrain → select → cells.

Every training run is a :class:`Job`; it names the jobs it needs done first:

* a **pretraining** per (dataset, SSL method, repeat), seed ``seed + repeat``, needs nothing;
* a **selection** run per (dataset, method, recipe, selection fraction) fine-tunes repeat 0 and needs
  that arm's repeat-0 pretraining (only when the preset has more than one recipe); a recipe added where
  the arm's choice sat at the edge of the space (:mod:`~cryomonai.experiment.edges`) joins with
  :meth:`RunGraph.add_selection`;
* a **cell** fine-tuning per (dataset, method, label fraction, repeat) with its arm's chosen recipe
  needs its pretraining. It joins the graph once the arm's recipe is chosen
  (:meth:`RunGraph.add_cells`), and a selection run of the chosen recipe *is* that cell's run.

Which runs go first (:meth:`RunGraph.ready`): lower repeat first, and within a repeat pretraining,
then selection, then cells; so the first repeat, and with it the first interim report, is done early.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from cryomonai.experiment.preset import GridCell, GridPreset
from cryomonai.experiment.progress import run_label

__all__ = ["Job", "RunGraph"]

#: stages of a repeat, in the order they run
PRETRAIN, SELECT, CELL = 0, 1, 2


@dataclass(frozen=True)
class Job:
    """One training run: ``("pretrain", (dataset, method, seed))`` or ``("finetune", (cell, recipe))``."""

    kind: str
    args: tuple
    after: tuple = ()  # the keys of the jobs it needs done first
    order: tuple = field(default=(), compare=False)  # (repeat, stage): lower runs first

    @property
    def key(self) -> tuple:
        """The job as ``(kind, *args)``: what the graph and ``jobs.csv`` know it by."""
        return (self.kind, *self.args)

    @property
    def label(self) -> str:
        """The run in words (:func:`~cryomonai.experiment.progress.run_label`)."""
        return run_label(self.kind, *self.args)


class RunGraph:
    """The runs the cells ``todo`` need, what each needs first, and which are done.

    Args:
        preset: the grid's preset.
        todo: the cells still to evaluate, in the grid's order.
        trained: whether a job's run is already trained (its folder says so).
        tried: ``(dataset, method)`` → the ``(recipe, fraction rounded)`` selection runs already in ``selection.csv``.
        runs: ``(dataset, method)`` → its selection runs as ``(recipe, fraction)`` (default: every recipe at
            every selection fraction, none with one recipe); the grid's include the recipes it added.
    """

    def __init__(self, preset: GridPreset, todo: list[GridCell], trained: Callable[[Job], bool],
                 tried: Callable[[str, str], set[tuple[str, float]]],
                 runs: Callable[[str, str], list[tuple[str, float]]] | None = None) -> None:
        self.preset, self.todo, self._trained = preset, list(todo), trained
        self.pending: dict[tuple, Job] = {}
        self.done: set[tuple] = set()
        recipes = list(preset.recipe_overrides())
        declared = [(r, float(f)) for r in (recipes if len(recipes) > 1 else []) for f in preset.selection_cells()]
        #: (dataset, method) in the order their recipes are chosen: a dataset's methods in the preset's order
        self.pairs = [(name, m) for name in dict.fromkeys(c.dataset for c in todo) for m in preset.methods]
        self.selection: dict[tuple[str, str], list[tuple]] = {}
        for dataset, method in self.pairs:
            have = tried(dataset, method)
            self.selection[(dataset, method)] = [
                self._finetuning(GridCell(dataset, method, frac, 0), recipe, SELECT)
                for recipe, frac in (runs(dataset, method) if runs is not None else declared)
                if (recipe, round(frac, 6)) not in have]
        for cell in todo:  # pretrain early: a repeat's pretraining before its first cell
            self._pretraining(cell.dataset, cell.method, cell.repeat)

    def _add(self, job: Job) -> tuple:
        """Schedule ``job`` unless it is trained (then it counts as done); its key."""
        if self._trained(job):
            self.done.add(job.key)
        elif job.key not in self.done:
            self.pending.setdefault(job.key, job)
        return job.key

    def _pretraining(self, dataset: str, method: str, repeat: int) -> tuple:
        if method == "random":
            return ()
        return (self._add(Job("pretrain", (dataset, method, self.preset.seed + repeat), order=(repeat, PRETRAIN))),)

    def _finetuning(self, cell: GridCell, recipe: str, stage: int) -> tuple:
        needs = self._pretraining(cell.dataset, cell.method, cell.repeat)
        return self._add(Job("finetune", (cell, recipe), needs, (cell.repeat, stage)))

    def selected(self, pair: tuple[str, str]) -> bool:
        """Whether every selection run of ``pair`` (dataset, method) is trained: its recipe can be chosen."""
        return all(k in self.done for k in self.selection[pair])

    def add_selection(self, pair: tuple[str, str], runs: list[tuple[GridCell, str]]) -> None:
        """More selection runs of ``pair`` (recipes added at the edge of the space): its recipe waits for them."""
        self.selection[pair] += [self._finetuning(cell, recipe, SELECT) for cell, recipe in runs]

    def add_cells(self, pair: tuple[str, str], choice: dict[float, str]) -> None:
        """The fine-tunings of ``pair``'s cells, each with its fraction's chosen recipe (``choice``: label
        fraction rounded to 6 digits → recipe)."""
        for cell in self.todo:
            if (cell.dataset, cell.method) == pair:
                self._finetuning(cell, choice[round(cell.label_fraction, 6)], CELL)

    def trained(self, cell: GridCell, recipe: str) -> bool:
        """Whether ``cell``'s fine-tuning with ``recipe`` is done."""
        return ("finetune", cell, recipe) in self.done

    def ready(self, running: set[tuple]) -> list[Job]:
        """Jobs not ``running`` whose needs are done, lowest ``order`` first."""
        jobs = [j for k, j in self.pending.items() if k not in running and all(a in self.done for a in j.after)]
        return sorted(jobs, key=lambda j: j.order)

    def finish(self, job: Job) -> None:
        """``job`` is trained."""
        self.pending.pop(job.key, None)
        self.done.add(job.key)
