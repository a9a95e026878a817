"""The grid's one scheduler: it hands the run graph's training runs to an executor and evaluates the
cells in the grid's order.

The protocol does not depend on who trains: only *who trains when* does. The executor
(:mod:`~cryomonai.experiment.executors`) is one of

* ``workers: 1`` — :class:`~cryomonai.experiment.executors.InProcessPool`: every run in this
  process, one after another (the serial grid);
* ``workers`` > 1 — :class:`~cryomonai.experiment.executors.LocalPool`: spawned processes, each
  with its share of the threads. The small networks of the CPU presets do not keep two cores busy
  from one process (data loading, Python and small tensor operations run on one core between the
  parallel kernels), so several runs at once pay;
* ``executor: slurm`` / ``debug`` — :class:`~cryomonai.experiment.slurm.SubmititPool`: one job per run.

An executor only *trains* (pretrainings, recipe-selection and cell fine-tunings, each as soon as what
it needs is done, :mod:`~cryomonai.experiment.graph`); it writes run folders and nothing else.
**This process** keeps the bookkeeping and everything that reads the validation or test split: it
records each collected run's time; chooses an arm's recipe on validation once its selection runs are
trained (the driver's ``choose_recipe``) — where the choice sits at the edge of the recipe space and the
preset says ``extend_edges``, it first adds the arm's next selection runs (``extend_recipes``) and chooses
again once they are trained — and only then adds that arm's cells to the graph; and
evaluates the cells **in the grid's order** (validation, the one test read, readouts, the
``results.csv`` row), a dataset's cells only after every arm of it has its recipe. So ``results.csv``,
``selection.csv``, resuming and the interim reports do not depend on the executor.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from cryomonai.experiment.executors import ExecutorSpec, InProcessPool, LocalPool
from cryomonai.experiment.graph import Job, RunGraph
from cryomonai.experiment.preset import GridCell
from cryomonai.experiment.slurm import SubmititPool

__all__ = ["make_pool", "schedule"]

log = logging.getLogger(__name__)


def make_pool(trainer: Any, spec: ExecutorSpec, workers: int) -> InProcessPool | LocalPool | SubmititPool:
    """The executor that trains the runs of ``trainer`` (a :class:`~cryomonai.experiment.training.GridTrainer`):
    ``local`` → :class:`InProcessPool` (``workers`` 1) or :class:`LocalPool`; ``slurm`` / ``debug`` → :class:`SubmititPool`."""
    if spec.kind != "local":
        return SubmititPool(trainer, spec)
    return InProcessPool(trainer) if workers == 1 else LocalPool(trainer, workers)


def schedule(driver: Any, pool: Any, todo: list[GridCell], evaluate: Callable[[GridCell, str], None]) -> None:
    """Train the runs that ``todo``'s cells need in ``pool``; evaluate the cells here, in order.

    Args:
        driver: the grid's driver (:class:`~cryomonai.experiment.grid.GridRunner`): ``preset``, its
            ``trainer`` and ``tables``, ``selection_runs(dataset, method)`` (its (recipe, fraction) selection runs),
            ``choose_recipe(dataset, method)`` (label fraction → recipe; reads validation only),
            ``extend_recipes(dataset, method)`` (after a choice: the (cell, recipe) selection runs to train before
            it is final, none if it is) and ``collected(job, seconds)`` (a training run is done: its time and progress).
        pool: an executor (``capacity``, ``submit``, ``wait``, ``result``, ``close``).
        todo: the cells to evaluate, in the grid's order.
        evaluate: ``evaluate(cell, recipe)`` evaluates a cell whose training is done and writes its row;
            called in ``todo``'s order, and for a dataset only once every method of it has its recipe.
    """
    preset, trainer, todo = driver.preset, driver.trainer, list(todo)

    def trained(job: Job) -> bool:
        return trainer.pretrained(*job.args) if job.kind == "pretrain" else trainer.finetuned(*job.args)

    graph = RunGraph(preset, todo, trained, driver.tables.tried, driver.selection_runs)
    chosen: dict[tuple[str, str], dict[float, str]] = {}  # (dataset, method) → label fraction → recipe
    running: dict[Any, Job] = {}  # a pool's handle → its run
    try:
        while todo:
            for pair in graph.pairs:  # in order, so that selection.csv is written in the grid's order
                if pair in chosen:
                    continue
                if not graph.selected(pair):
                    break
                choice = driver.choose_recipe(*pair)
                more = driver.extend_recipes(*pair)  # at the edge of the space: more selection runs first
                if more:
                    graph.add_selection(pair, more)
                    break
                chosen[pair] = choice
                graph.add_cells(pair, chosen[pair])
            while todo and _evaluable(todo[0], chosen, graph, preset.methods):
                cell = todo.pop(0)
                evaluate(cell, _recipe(chosen, cell))
            if not todo:
                break
            busy = {j.key for j in running.values()}
            for job in graph.ready(busy)[:pool.capacity - len(running)]:
                log.info("[grid %s] training: %s", preset.name, job.label)
                running[pool.submit(job, job.label)] = job
            if not running:
                raise RuntimeError(f"grid {preset.name}: nothing to train and cells left ({todo[0]}): a scheduling bug")
            for handle in pool.wait(list(running)):
                job = running.pop(handle)
                seconds = pool.result(handle, job.label)  # a failed run stops the grid here, naming it
                graph.finish(job)
                driver.collected(job, seconds)
    finally:
        pool.close()


def _recipe(chosen: dict[tuple[str, str], dict[float, str]], cell: GridCell) -> str:
    return chosen[(cell.dataset, cell.method)][round(cell.label_fraction, 6)]


def _evaluable(cell: GridCell, chosen: dict[tuple[str, str], dict[float, str]], graph: RunGraph, methods: list[str]) -> bool:
    if not all((cell.dataset, m) in chosen for m in methods):
        return False
    return graph.trained(cell, _recipe(chosen, cell))
