"""A grid's training runs in parallel: worker processes (the preset's ``workers`` > 1) or cluster jobs.

The protocol is the serial grid's (:meth:`~cryomonai.experiment.grid.GridRunner.run`); only *who
trains when* changes. The small networks of the CPU presets do not keep two cores busy from one
process (data loading, Python and small tensor operations run on one core between the parallel
kernels), so ``workers`` processes, each with its share of the threads, train several runs at once:

* **the pool** (:mod:`~cryomonai.experiment.executors`: spawned processes with
  ``torch.set_num_threads(threads // workers)``, or one SLURM job per run through submitit) only *train*:
  pretrainings, recipe-selection fine-tunings and cell fine-tunings, each as soon as what it needs
  is done (a cell after its pretraining and its arm's recipe; a pretrained arm's selection runs
  after the repeat-0 pretraining). They write their run folders and nothing else.
* **this process** keeps the bookkeeping and everything that reads the validation or test split:
  it records each finished run's time in ``timings.csv``; chooses an arm's recipe on validation
  once its selection runs are trained (:meth:`~cryomonai.experiment.grid.GridRunner.choose_recipe`),
  and only then hands that arm's cells to the workers; and evaluates the cells **in the grid's
  order** (:meth:`~cryomonai.experiment.grid.GridRunner.run_cell`: validation, the one test read,
  readouts, the ``results.csv`` row), a dataset's cells only after every arm of it has its recipe —
  the serial grid's rule — so ``results.csv``, ``selection.csv``, resuming and the interim reports
  are the serial grid's.

The grid's progress (:mod:`~cryomonai.experiment.progress`) counts a training run when this process
collects it from the pool (its duration: the bundle run's, as the worker or job measured it), and a
cell when its row is written.

Which runs go first: lower repeat first, and within a repeat pretraining, then selection, then
cells; so the first repeat, and with it the first interim report, is done early.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable

from cryomonai.experiment.grid import GridRunner
from cryomonai.experiment.preset import GridCell, GridPreset
from cryomonai.experiment.progress import bundle_seconds, run_label

__all__ = ["run_parallel"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Job:
    """One training run: ``("pretrain", dataset, method, seed)`` or ``("finetune", cell, recipe)``."""

    kind: str
    args: tuple
    after: tuple = ()  # the jobs it needs done first
    order: tuple = field(default=(), compare=False)  # (repeat, stage): lower runs first


class _Schedule:
    """The jobs still to train, what each needs first, and which are done."""

    def __init__(self) -> None:
        self.pending: dict[tuple, _Job] = {}
        self.done: set[tuple] = set()

    @staticmethod
    def key(job: _Job) -> tuple:
        return (job.kind, *job.args)

    def add(self, job: _Job, trained: bool) -> tuple:
        """Schedule ``job`` unless ``trained`` (then it counts as done); its key."""
        key = self.key(job)
        if trained:
            self.done.add(key)
        elif key not in self.done:
            self.pending.setdefault(key, job)
        return key

    def finish(self, job: _Job) -> None:
        """``job`` is trained."""
        key = self.key(job)
        self.pending.pop(key, None)
        self.done.add(key)

    def ready(self, running: set[tuple]) -> list[_Job]:
        """Jobs whose needs are done, lowest ``order`` first."""
        jobs = [j for k, j in self.pending.items() if k not in running and all(a in self.done for a in j.after)]
        return sorted(jobs, key=lambda j: j.order)


def run_parallel(runner: GridRunner, pool: Any, todo: list[GridCell],
                 on_row: Callable[[GridCell, str], None]) -> None:
    """Train the runs that ``todo``'s cells need in ``pool`` (an executor of
    :mod:`~cryomonai.experiment.executors`: worker processes or submitit jobs); evaluate the cells here, in order.

    ``on_row(cell, recipe)`` evaluates a cell whose training is done (the grid's
    :meth:`~cryomonai.experiment.grid.GridRunner.run_cell` plus its row); it is called in ``todo``'s
    order, and for a dataset only once every method of it has its recipe.
    """
    preset = runner.preset
    schedule = _Schedule()
    recipes = list(preset.recipe_overrides())
    # a dataset's recipes are chosen for all its methods, in the preset's order, as in the serial grid
    pairs = [(name, m) for name in dict.fromkeys(c.dataset for c in todo) for m in preset.methods]

    def pretraining(dataset: str, method: str, repeat: int) -> tuple:
        if method == "random":
            return ()
        job = _Job("pretrain", (dataset, method, preset.seed + repeat), order=(repeat, 0))
        return (schedule.add(job, _trained(runner, job)),)

    def finetuning(cell: GridCell, recipe: str, stage: int) -> tuple:
        job = _Job("finetune", (cell, recipe), pretraining(cell.dataset, cell.method, cell.repeat), (cell.repeat, stage))
        return schedule.add(job, _trained(runner, job))

    selection: dict[tuple[str, str], list[tuple]] = {}
    for dataset, method in pairs:
        tried = runner.tried_recipes(dataset, method)
        selection[(dataset, method)] = [
            finetuning(GridCell(dataset, method, frac, 0), recipe, 1)
            for recipe in (recipes if len(recipes) > 1 else []) for frac in preset.selection_cells()
            if (recipe, round(frac, 6)) not in tried]
    for cell in todo:  # pretrain early: the serial grid would pretrain a repeat before its first cell
        pretraining(cell.dataset, cell.method, cell.repeat)

    chosen: dict[tuple[str, str], str] = {}
    running: dict[Any, _Job] = {}  # a pool's handle → its run
    try:
        while todo:
            for pair in pairs:  # in order, so that selection.csv is written as by the serial grid
                if pair in chosen:
                    continue
                if not all(k in schedule.done for k in selection[pair]):
                    break
                chosen[pair] = runner.choose_recipe(*pair)  # reads validation only
                for cell in todo:
                    if (cell.dataset, cell.method) == pair:
                        finetuning(cell, chosen[pair], 2)
            while todo and _evaluable(todo[0], chosen, schedule, preset):
                cell = todo.pop(0)
                on_row(cell, chosen[(cell.dataset, cell.method)])
            if not todo:
                break
            busy = {schedule.key(j) for j in running.values()}
            for job in schedule.ready(busy)[:pool.capacity - len(running)]:
                log.info("[grid %s] training: %s", preset.name, _describe(job))
                running[pool.submit(job, _describe(job))] = job
            if not running:
                raise RuntimeError(f"grid {preset.name}: nothing to train and cells left ({todo[0]}): a scheduling bug")
            for handle in pool.wait(list(running)):
                job = running.pop(handle)
                seconds = pool.result(handle, _describe(job))  # a failed run stops the grid here, naming it
                schedule.finish(job)
                _record(runner, job, seconds)
    finally:
        pool.close()


def _trained(runner: GridRunner, job: _Job) -> bool:
    return runner.pretrained(*job.args) if job.kind == "pretrain" else runner.finetuned(*job.args)


def _evaluable(cell: GridCell, chosen: dict, schedule: _Schedule, preset: GridPreset) -> bool:
    if not all((cell.dataset, m) in chosen for m in preset.methods):
        return False
    return ("finetune", cell, chosen[(cell.dataset, cell.method)]) in schedule.done


def _record(runner: GridRunner, job: _Job, seconds: dict[str, float] | None) -> None:
    """A collected run: counted in the grid's progress; its time in ``timings.csv`` (None: it was already trained)."""
    runner.finished("pretrain" if job.kind == "pretrain" else "finetune", _describe(job), bundle_seconds(seconds))
    if seconds is None:
        return
    if job.kind == "pretrain":
        dataset, method, seed = job.args
        runner.record_timing("pretrain", seconds, dataset, method, repeat=seed - runner.preset.seed)
    else:
        cell, recipe = job.args
        runner.record_timing("finetune", seconds, cell.dataset, cell.method, cell.label_fraction, cell.repeat, recipe)


def _describe(job: _Job) -> str:
    return run_label(job.kind, *job.args)

