"""Training curves from TensorBoard event files, as one PNG (figures only)."""

from __future__ import annotations

import os
from pathlib import Path

from matplotlib.figure import Figure
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from cryomonai.visualize.figure import save_png

__all__ = ["read_scalars", "plot_training_curves"]

#: (panel title, scalar tag, which runs: "pretrain" or "finetune")
PANELS = (
    ("pretraining loss (per iteration)", "loss", "pretrain"),
    ("fine-tuning loss (per iteration)", "train_loss", "finetune"),
    ("validation accuracy (per epoch)", "val_accuracy", "finetune"),
)


def read_scalars(log_dir: str | os.PathLike) -> dict[str, list[tuple[int, float]]]:
    """All scalar series of a TensorBoard log folder: tag → [(step, value), …]."""
    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def plot_training_curves(runs: dict[str, str | os.PathLike], path: str | os.PathLike) -> Path:
    """PNG with the pretraining loss, fine-tuning loss and validation accuracy of ``runs``
    (label → TensorBoard log folder; labels starting with "pretrain" feed the first panel)."""
    series = {label: read_scalars(d) for label, d in runs.items() if Path(d).is_dir()}
    fig = Figure(figsize=(4.2 * len(PANELS), 3.2))
    axes = fig.subplots(1, len(PANELS))
    for ax, (title, tag, kind) in zip(axes, PANELS):
        for label, scalars in series.items():
            if label.startswith("pretrain") == (kind == "pretrain") and tag in scalars:
                steps, values = zip(*scalars[tag])
                ax.plot(steps, values, label=label, lw=1)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("iteration" if "iteration" in title else "epoch", fontsize=8)
        ax.tick_params(labelsize=7)
        if ax.lines:
            ax.legend(fontsize=7)
    fig.tight_layout()
    return save_png(fig, path, dpi=110)
