"""``cryomonai demo``: the main job in miniature on built-in simulated data, through the bundle.

simulate → pretrain → fine-tune from the pretrained encoder and from random init on a fraction of
the labels → evaluate both on the test split. Every step is a run id of the ``cryo_ssl`` bundle
(:func:`cryomonai.pipeline.run_bundle`); the full protocol with repeats, selection and t-tests is
:mod:`cryomonai.experiment` (``cryomonai grid``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cryomonai.errors import CryoDataError
from cryomonai.layout import RunLayout
from cryomonai.pipeline import run_bundle
from cryomonai.visualize.curves import plot_training_curves

__all__ = ["demo"]


def _accuracy(wf: Any) -> float:
    metrics = wf.parser.get_parsed_content("validate#evaluator").state.metrics
    if "accuracy" not in metrics:
        raise CryoDataError(wf.parser["dataset_dir"], "the test split is empty", "simulate more subtomograms per class")
    return float(metrics["accuracy"])


def demo(
    out: str | os.PathLike = "runs/demo",
    n_per_class: int = 60,
    snr: float = 0.5,
    pretrain_epochs: int = 10,
    finetune_epochs: int = 20,
    label_fraction: float = 0.25,
    method: str = "moco",
    batch_size: int = 16,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, float]:
    """The main job on built-in simulated data: simulate → pretrain → fine-tune (pretrained and
    random init) on ``label_fraction`` of the labels → evaluate both on the test split.

    Every step is a run id of the ``cryo_ssl`` bundle. Writes under ``out``: ``data/`` (the
    simulated dataset), ``pretrain/`` and ``finetune_{pretrained,random}/`` (``models/`` checkpoints,
    ``eval/`` TensorBoard logs, metrics and test predictions) and ``curves.png``.

    Returns:
        test accuracies ``{"pretrained": …, "random": …}``.
    """
    out = Path(out).resolve()
    common = dict(
        dataset_dir=str(out / "data"),
        simulation={"n_per_class": n_per_class, "snr": snr, "box": 32, "seed": seed, "workers": None,
                    "n_neighbours": 4, "neighbour_gap": [0, 2], "neighbour_contact": "target"},  # the touching shell
        batch_size=batch_size, seed=seed, progress=progress,
    )
    pre = RunLayout(out / "pretrain")
    run_bundle("pretrain", method, **pre.bundle_paths(), epochs=pretrain_epochs, **common)
    acc = {}
    for name, ckpt in (("pretrained", str(pre.pretrain)), ("random", "")):
        run = out / f"finetune_{name}"
        paths = RunLayout(run).bundle_paths()
        run_bundle("finetune", pretrained=ckpt, epochs=finetune_epochs, label_fraction=label_fraction, **paths, **common)
        acc[name] = _accuracy(run_bundle("evaluate", **paths, **common))
    plot_training_curves(
        {"pretrain": pre.eval / "pretrain", **{f"finetune ({k})": RunLayout(out / f"finetune_{k}").eval / "finetune" for k in acc}},
        out / "curves.png",
    )
    return acc
