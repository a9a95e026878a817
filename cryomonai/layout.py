"""One run's folder layout and file names — the one place they are spelled.

A run of the bundle (pretraining, fine-tuning, evaluation …) writes into one folder::

    <run>/models/   checkpoints: pretrain.pt, finetune_best.pt, finetune_final.pt, *_checkpoint_epoch=N.pt
    <run>/eval/     TensorBoard logs, metrics, predictions, labelled_rows.csv (a fine-tuning's labelled subset)

The bundle's JSON reads the file names from here (``common.json``'s ``run_files``), Python code
through :class:`RunLayout`; no other module spells a checkpoint's name (``tests/test_layout.py``).

Example:
    >>> run = RunLayout("runs/x")
    >>> run.pretrain.as_posix(), run.bundle_paths()["ckpt_dir"]
    ('runs/x/models/pretrain.pt', 'runs/x/models')
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["FINETUNE_BEST", "FINETUNE_FINAL", "LABELLED_ROWS", "PRETRAIN", "RUN_FILES", "RunLayout"]

#: the final pretraining checkpoint (the SSL method with its encoder, queue …)
PRETRAIN = "pretrain.pt"
#: the fine-tuned classifier with the best validation accuracy
FINETUNE_BEST = "finetune_best.pt"
#: the fine-tuned classifier after the last epoch (its presence marks a finished fine-tuning)
FINETUNE_FINAL = "finetune_final.pt"
#: the table rows a fine-tuning trained on (its labelled subset), in ``eval/``
LABELLED_ROWS = "labelled_rows.csv"
#: the names by key, as ``common.json``'s ``run_files`` gives them to the configs
RUN_FILES = {"pretrain": PRETRAIN, "finetune_best": FINETUNE_BEST, "finetune_final": FINETUNE_FINAL,
             "labelled_rows": LABELLED_ROWS}


@dataclass(frozen=True)
class RunLayout:
    """The folders and files of one bundle run rooted at ``root``."""

    root: Path

    def __init__(self, root: str | os.PathLike) -> None:
        object.__setattr__(self, "root", Path(root))

    @property
    def models(self) -> Path:
        """Checkpoints (the bundle's ``ckpt_dir``)."""
        return self.root / "models"

    @property
    def eval(self) -> Path:
        """Logs, metrics and predictions (the bundle's ``output_dir``)."""
        return self.root / "eval"

    pretrain = property(lambda self: self.models / PRETRAIN, doc="The final pretraining checkpoint.")
    finetune_best = property(lambda self: self.models / FINETUNE_BEST, doc="The best-validation classifier.")
    finetune_final = property(lambda self: self.models / FINETUNE_FINAL, doc="The last-epoch classifier.")
    labelled_rows = property(lambda self: self.eval / LABELLED_ROWS, doc="The rows a fine-tuning trained on.")

    def bundle_paths(self) -> dict[str, str]:
        """The bundle keys that place a run here: ``ckpt_dir`` and ``output_dir``."""
        return {"ckpt_dir": str(self.models), "output_dir": str(self.eval)}
