"""The context control's section of a grid's ``table.md`` (issue 26).

Each arm's accuracy on the context-only test boxes (the same boxes without their target:
``results.csv``'s ``context_accuracy``, :mod:`~cryomonai.experiment.context_control`) next to its
test accuracy and chance (``1 / n_classes``), and per dataset whether the benchmark is valid: every
arm's mean context-only accuracy, at every label fraction, within 5 points of chance
(:func:`~cryomonai.evaluation.context.context_valid`). A dataset without the control (its
``context_accuracy`` all NaN) is left out.

Example:
    >>> import pandas as pd
    >>> df = pd.DataFrame({"dataset": "d", "snr": 0.05, "method": ["random", "simclr"], "label_fraction": 0.1,
    ...                    "repeat": 0, "test_accuracy": [0.5, 0.7], "context_accuracy": [0.27, 0.24]})
    >>> [line for line in context_lines(df, 4) if "valid" in line.lower()][-1]
    '- SNR 0.05 (`d`): valid: context-only accuracy within 5 points of chance (25.0 %) for every arm and fraction.'
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from cryomonai.evaluation.context import context_valid
from cryomonai.evaluation.stats import dataset_title, method_label, order_datasets, order_methods
from cryomonai.io.atomic import atomic_write

__all__ = ["add_context_section", "context_lines"]

#: allowed distance of the context-only accuracy from chance (5 points)
TOLERANCE = 0.05


def _pct(values: pd.Series) -> str:
    """``mean ± std`` in % (sample std; the mean alone for one repeat)."""
    values = values.dropna().astype(float)
    if len(values) < 2:
        return f"{100 * values.mean():.1f}"
    return f"{100 * values.mean():.1f} ± {100 * values.std(ddof=1):.1f}"


def context_lines(results: pd.DataFrame, n_classes: int, baseline: str = "random") -> list[str]:
    """Markdown lines of the context-control section; ``[]`` when no row has a ``context_accuracy``."""
    if "context_accuracy" not in results.columns:
        return []
    df = results[pd.to_numeric(results["context_accuracy"], errors="coerce").notna()]
    if df.empty:
        return []
    chance = 1.0 / n_classes
    rows, verdicts = [], []
    for dataset in order_datasets(df):
        block, failed = df[df["dataset"] == dataset], []
        title = dataset_title(df, dataset)
        for frac in sorted(block["label_fraction"].unique()):
            for method in order_methods(block["method"], baseline):
                cell = block[(block["label_fraction"] == frac) & (block["method"] == method)]
                if cell.empty:
                    continue
                mean = float(cell["context_accuracy"].astype(float).mean())
                ok = context_valid(mean, n_classes, TOLERANCE)
                if not ok:
                    failed.append(f"{method_label(method)} at {100 * frac:g} % labels: {100 * mean:.1f} %")
                rows.append(f"| {title} | {100 * frac:g} | {method_label(method)} | {_pct(cell['test_accuracy'])} | "
                            f"{_pct(cell['context_accuracy'])} | {100 * chance:.1f} | {'yes' if ok else '**no**'} |")
        if failed:
            verdicts.append(f"- {title}: NOT VALID: context-only accuracy more than {100 * TOLERANCE:g} points from "
                            f"chance ({100 * chance:.1f} %) for " + "; ".join(failed) + ".")
        else:
            verdicts.append(f"- {title}: valid: context-only accuracy within {100 * TOLERANCE:g} points of chance "
                            f"({100 * chance:.1f} %) for every arm and fraction.")
    return ["## Context control: accuracy on the test boxes without their target", "",
            "Each cell's fine-tuned model on the same test boxes rendered without the target (same neighbours, "
            "noise and filters), mean ± std over the repeats in %. A classifier that reads the particle scores "
            f"chance there; a benchmark is valid only where every arm's context-only accuracy is within "
            f"{100 * TOLERANCE:g} points of chance.", "",
            "| Dataset | Labelled (%) | Method | Test accuracy | Context-only accuracy | Chance | within 5 points |",
            "|---|---:|---|---:|---:|---:|:---:|", *rows, "", *verdicts, ""]


def add_context_section(table_md: str | os.PathLike, results: pd.DataFrame, n_classes: int) -> Path:
    """Append the context-control section (:func:`context_lines`) to ``table_md`` (rewritten atomically);
    the file is unchanged when the results have no context control."""
    path, lines = Path(table_md), context_lines(results, n_classes)
    if lines:
        text = path.read_text().rstrip() + "\n\n" + "\n".join(lines).rstrip() + "\n"
        with atomic_write(path, "w") as f:
            f.write(text)
    return path
