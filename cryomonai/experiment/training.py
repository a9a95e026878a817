"""A grid's bundle runs: pretrain, fine-tune, evaluate — each a run of the ``cryo_ssl`` bundle
(:func:`cryomonai.pipeline.run_bundle`), never a second training loop.

:class:`GridTrainer` is what an executor builds where a run trains (this process, a worker process,
a SLURM job): from the preset and the grid's folder alone. It writes the run's folder and nothing
else; the grid's tables are the driver's (:mod:`~cryomonai.experiment.tables`).
"""

from __future__ import annotations

import copy
import os
import time
from pathlib import Path
from typing import Any

from cryomonai.engines.checkpoints import latest_checkpoint
from cryomonai.experiment.budget import resolve_min_steps
from cryomonai.experiment.data import GridData
from cryomonai.experiment.edges import recipe_overrides
from cryomonai.experiment.layout import GridLayout
from cryomonai.experiment.network_keys import network_keys
from cryomonai.experiment.preset import GridCell, GridPreset
from cryomonai.io.atomic import atomic_write
from cryomonai.pipeline import run_bundle

__all__ = ["GridTrainer", "write_text"]


def write_text(path: os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_write(path, "w") as fh:
        fh.write(text)


def _resumable(ckpt_dir: os.PathLike, prefix: str) -> bool:
    """Whether a run stopped half-way left an epoch checkpoint to resume from."""
    return os.path.isdir(ckpt_dir) and latest_checkpoint(ckpt_dir, prefix) is not None


def _accuracy(wf: Any) -> float:
    """The accuracy of an ``evaluate`` run."""
    return float(wf.parser.get_parsed_content("validate#evaluator").state.metrics["accuracy"])


class GridTrainer:
    """The bundle runs of ``preset``'s grid under ``out`` (``progress``: the runs' own progress bars)."""

    def __init__(self, preset: GridPreset, out: str | os.PathLike, progress: bool = False) -> None:
        self.preset, self.progress = preset, progress
        self.layout = GridLayout(Path(out).resolve())
        self.out = self.layout.root
        self.data = GridData(preset, self.layout, progress)

    def pretrained(self, dataset: str, method: str, pretrain_seed: int) -> bool:
        """Whether that pretraining is done (its ``pretrain.pt`` is written)."""
        return self.layout.pretrain_run(dataset, method, pretrain_seed).pretrain.is_file()

    def finetuned(self, cell: GridCell, recipe: str) -> bool:
        """Whether ``cell``'s fine-tuning with ``recipe`` is done (its final checkpoint is written)."""
        return self.layout.cell_run(cell.run_dir(recipe)).finetune_final.is_file()

    def checkpoint(self, cell: GridCell) -> str:
        """The pretrained checkpoint ``cell`` fine-tunes from ("" for ``random``)."""
        if cell.method == "random":
            return ""
        return str(self.layout.pretrain_run(cell.dataset, cell.method, self.preset.seed + cell.repeat).pretrain)

    def train_pretraining(self, dataset: str, method: str, pretrain_seed: int,
                          distributed: bool = False) -> dict[str, float] | None:
        """Pretrain ``method`` on ``dataset`` with ``pretrain_seed`` unless done (a half-done run resumes).

        ``distributed``: this process is one rank of a DDP pretraining (the bundle's
        ``multi_gpu_pretrain.json``; ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` … set by the caller).

        Returns the bundle run's ``{"setup", "compute"}`` seconds, or None if it was already done.
        """
        if self.pretrained(dataset, method, pretrain_seed):
            return None
        run = self.layout.pretrain_run(dataset, method, pretrain_seed)
        overrides = {**copy.deepcopy(self.preset.pretrain), **copy.deepcopy(self.preset.pretrain_by_method.get(method, {}))}
        t0 = time.perf_counter()
        wf = run_bundle(
            "pretrain", method, self.preset.encoder, resume=_resumable(run.models, "pretrain"), distributed=distributed,
            **run.bundle_paths(),
            **{**self.data.bundle_keys(dataset, pretrain_seed), **overrides},
        )
        write_text(run.root / "seconds.txt", f"{time.perf_counter() - t0:.1f}\n")
        return wf.seconds

    def train_finetune(self, cell: GridCell, recipe: str) -> dict[str, float] | None:
        """Fine-tune ``cell`` with ``recipe`` unless done (a half-done run resumes); its SSL pretraining must
        be done. Returns the bundle run's seconds, or None if it was already done."""
        if self.finetuned(cell, recipe):
            return None
        run = self.layout.cell_run(cell.run_dir(recipe))
        pretrained = self.checkpoint(cell)
        if pretrained and not os.path.isfile(pretrained):
            raise RuntimeError(f"{pretrained} is missing: {cell} is fine-tuned before its pretraining (a scheduling bug)")
        t0 = time.perf_counter()
        wf = run_bundle(
            "finetune", encoder=self.preset.encoder, pretrained=pretrained, resume=_resumable(run.models, "finetune"),
            **{**self.bundle_keys(cell, recipe),
               **resolve_min_steps(self.preset, self.recipe(recipe), self.data.table_path(cell.dataset))},
        )
        write_text(run.root / "seconds.txt", f"{time.perf_counter() - t0:.2f}\n")
        return wf.seconds

    def recipe(self, recipe: str) -> dict[str, Any]:
        """``recipe``'s full fine-tuning overrides: a declared recipe's, or one the grid added at the edge of the
        space, read from the grid's record (so a worker handed the preset before it was added finds it)."""
        return recipe_overrides(self.preset, self.layout.recipes_extended)[recipe]

    def bundle_keys(self, cell: GridCell, recipe: str) -> dict[str, Any]:
        """The bundle overrides that locate ``cell``'s run with ``recipe`` (data, labelled subset, folders, seed)."""
        run = self.layout.cell_run(cell.run_dir(recipe))
        seed = self.preset.seed + cell.repeat
        return dict(label_fraction=cell.label_fraction, label_seed=cell.repeat, **run.bundle_paths(),
                    **self.data.bundle_keys(cell.dataset, seed))

    def evaluate(self, cell: GridCell, recipe: str, split: str, **overrides: Any) -> tuple[float, Any]:
        """Score ``cell``'s best model (fine-tuned with ``recipe``) on ``split``: the accuracy and the bundle run
        (``overrides``: more bundle keys, e.g. another table for the context control)."""
        wf = run_bundle("evaluate", encoder=self.preset.encoder, **{"validate#split": split},
                        **{**self.bundle_keys(cell, recipe), **network_keys(self.recipe(recipe)), **overrides})
        return _accuracy(wf), wf
