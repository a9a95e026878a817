"""Figures of the experiment grid's results: accuracy against labelled fraction, confusion matrices.

Figures only; the numbers come from :mod:`cryomonai.evaluation.stats` (mean ± std over repeats) and
from the cells' ``eval/predictions_test.csv`` files. Accuracies in ``results.csv`` are fractions in
[0, 1]; everything shown is in %.

* :func:`plot_accuracy_vs_labels` — accuracy (%) against labelled fraction (%), one panel per dataset;
* :func:`plot_gain_over_baseline` — each method's gain over the baseline (points) per labelled fraction,
  with its Holm-adjusted Welch p, one heat map per dataset: which method, at which noise, with how many labels;
* :func:`plot_confusion_matrices` — one row-normalised confusion matrix per method.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import ticker
from matplotlib.figure import Figure
from sklearn.metrics import confusion_matrix

from cryomonai.errors import CryoDataError
from cryomonai.evaluation.stats import dataset_title, method_label, order_datasets, order_methods, read_results, summarise
from cryomonai.visualize.figure import save_png

__all__ = ["plot_accuracy_vs_labels", "plot_confusion_matrices", "plot_gain_over_baseline"]


def plot_accuracy_vs_labels(
    results: pd.DataFrame | str | os.PathLike,
    path: str | os.PathLike,
    num_classes: int | None = None,
    metric: str = "test_accuracy",
    baseline: str = "random",
    dpi: int = 110,
) -> Path:
    """PNG: ``metric`` (%) against labelled fraction (%), one panel per dataset, mean ± std per method. The
    fraction axis is logarithmic where the fractions span a factor of 8 or more (1 / 10 / 100 %).

    Where the results have the deployed classifier (``deployed_test_accuracy``: probe or fine-tune,
    chosen on validation) and ``metric`` is ``test_accuracy``, each pretrained arm also gets its
    deployed accuracy, dotted in the arm's colour: what a user would ship, beside what fine-tuning gave.

    Args:
        results: the grid's results (DataFrame or path).
        path: output PNG (atomic; folder created).
        num_classes: draws the chance level ``100 / num_classes`` %; ``None``: taken from a
            ``num_classes`` column of the results if there is one, else no chance line.
        metric: the accuracy column.
        baseline: the method drawn first (random init).
        dpi: resolution.
    """
    df = read_results(results, metric)
    summary = summarise(df, metric)
    deployed = None
    if metric == "test_accuracy" and "deployed_test_accuracy" in df.columns:
        deployed = summarise(df[df["method"] != baseline], "deployed_test_accuracy")
    if num_classes is None and "num_classes" in df.columns:
        num_classes = int(df["num_classes"].dropna().iloc[0])
    datasets = order_datasets(df[df["dataset"].isin(summary["dataset"])])
    methods = order_methods(summary["method"], baseline)
    spread = summary["label_fraction"].max() / summary["label_fraction"].min()
    log_x = spread >= 8  # e.g. 1 / 10 / 100 %: on a linear axis the low fractions would crowd into one point
    fig = Figure(figsize=(3.6 * max(len(datasets), 1) + 1.4, 3.4))
    axes = fig.subplots(1, max(len(datasets), 1), squeeze=False, sharey=True)
    for ax, dataset in zip(axes[0], datasets):
        block = summary[summary["dataset"] == dataset]
        for k, m in enumerate(methods):
            rows = block[block["method"] == m].sort_values("label_fraction")
            offset = k - (len(methods) - 1) / 2  # so that error bars do not overlap: 0.8 points, or 6 % on a log axis
            dodge = (lambda x, o=offset: x * 1.06 ** o) if log_x else (lambda x, o=offset: x + 0.8 * o)
            line = ax.errorbar(dodge(100 * rows["label_fraction"]), 100 * rows["mean"], yerr=100 * rows["std"].fillna(0),
                               marker="o", ms=4, capsize=3, lw=1.4, label=method_label(m), ls="--" if m == baseline else "-")
            if deployed is not None:
                ship = deployed[(deployed["dataset"] == dataset) & (deployed["method"] == m)].sort_values("label_fraction")
                if len(ship):
                    ax.plot(dodge(100 * ship["label_fraction"]), 100 * ship["mean"], marker="s", ms=4, mfc="none", lw=1.2,
                            ls=":", color=line[0].get_color(), label=f"{method_label(m)} deployed")
        if num_classes:
            ax.axhline(100 / num_classes, color="0.5", ls=":", lw=1, label=f"chance (1/{num_classes})")
        ax.set_title(dataset_title(df, dataset).replace("`", ""), fontsize=9)
        ax.set_xlabel("labelled training data (%)")
        if log_x:
            ax.set_xscale("log")
            ax.xaxis.set_minor_locator(ticker.NullLocator())
        ax.set_xticks(sorted(100 * block["label_fraction"].unique()))
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel(f"{metric.replace('_', ' ')} (%)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    # each arm, then its deployed classifier, then chance; the legend's column as wide as its longest label
    rank = {label: i for i, label in enumerate(x for m in methods for x in (method_label(m), f"{method_label(m)} deployed"))}
    order = sorted(range(len(labels)), key=lambda i: rank.get(labels[i], len(rank)))
    handles, labels = [handles[i] for i in order], [labels[i] for i in order]
    room = max(1.4, 0.6 + 0.07 * max(map(len, labels), default=0))
    fig.set_figwidth(fig.get_figwidth() - 1.4 + room)
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1 - (room - 0.1) / fig.get_figwidth(), 0.5),
               fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 1 - room / fig.get_figwidth(), 1))
    return save_png(fig, path, dpi=dpi)


def plot_gain_over_baseline(stats: pd.DataFrame, path: str | os.PathLike, results: pd.DataFrame | None = None,
                            metric: str = "test_accuracy", baseline: str = "random", dpi: int = 110) -> Path:
    """PNG: one heat map per dataset, a row per method and a column per labelled fraction, each cell the
    method's mean gain over the baseline in points of ``metric`` and its Holm-adjusted Welch p.

    Blue is a gain, red a loss, on one colour scale for every panel; a bold number has Holm Welch p < 0.05.

    Args:
        stats: :func:`~cryomonai.evaluation.stats.arms_vs_baseline` of the grid (``dataset``,
            ``label_fraction``, ``method``, ``mean_difference``, ``welch_p_holm``).
        path: output PNG (atomic; folder created).
        results: the grid's results, for the panels' titles (the datasets' SNR); None: the dataset names.
        metric: what the gain is of, for the colour bar's label.
        baseline: the method compared against, for the colour bar's label.
        dpi: resolution.
    """
    if stats.empty:
        raise ValueError("gain over the baseline: no method to compare (the grid has only the baseline)")
    datasets = order_datasets(results) if results is not None else list(dict.fromkeys(stats["dataset"]))
    datasets = [d for d in datasets if d in set(stats["dataset"])]
    methods = order_methods(stats["method"], baseline)
    fractions = sorted(stats["label_fraction"].unique())
    limit = max(1.0, float(np.nanmax(np.abs(100 * stats["mean_difference"].to_numpy(float)))))
    fig = Figure(figsize=(0.95 * len(fractions) * len(datasets) + 0.9 * len(datasets) + 1.6, 0.55 * len(methods) + 1.5),
                 layout="constrained")
    axes = fig.subplots(1, len(datasets), squeeze=False, sharey=True)
    image = None
    for ax, dataset in zip(axes[0], datasets):
        block = stats[stats["dataset"] == dataset].set_index(["method", "label_fraction"])
        gain = np.full((len(methods), len(fractions)), np.nan)
        for i, m in enumerate(methods):
            for j, f in enumerate(fractions):
                if (m, f) in block.index:
                    row = block.loc[(m, f)]
                    gain[i, j] = 100 * float(row["mean_difference"])
                    p = float(row["welch_p_holm"])
                    ax.text(j, i, f"{gain[i, j]:+.1f}\np={p:.2g}" if math.isfinite(p) else f"{gain[i, j]:+.1f}",
                            ha="center", va="center", fontsize=7, fontweight="bold" if p < 0.05 else "normal",
                            color="white" if abs(gain[i, j]) > 0.6 * limit else "black")
        image = ax.imshow(gain, cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto")
        ax.set_xticks(range(len(fractions)), [f"{100 * f:g} %" for f in fractions], fontsize=8)
        ax.set_yticks(range(len(methods)), [method_label(m) for m in methods], fontsize=8)
        ax.set_xlabel("labelled", fontsize=8)
        title = dataset_title(results, dataset) if results is not None else dataset
        ax.set_title(title.replace("`", ""), fontsize=9)
    fig.colorbar(image, ax=axes[0].tolist(), shrink=0.9,
                 label=f"{metric.replace('_', ' ')}: gain over\n{method_label(baseline)} (points)")
    return save_png(fig, path, dpi=dpi)


def _read_predictions(files: Sequence[str | os.PathLike], class_names: Sequence[str]) -> pd.DataFrame:
    """``label``/``prediction`` of every file (unlabelled rows dropped), checked against ``class_names``."""
    frames = []
    for file in files:
        try:
            df = pd.read_csv(file, usecols=["label", "prediction"], dtype=str, keep_default_na=False)
        except (OSError, ValueError) as err:
            raise CryoDataError(file, f"cannot read label/prediction columns ({err})",
                                "give predictions_test.csv files written by PredictionsWriter") from err
        df = df[df["label"] != ""]
        unknown = sorted((set(df["label"]) | set(df["prediction"])) - set(class_names))
        if unknown:
            raise CryoDataError(file, f"class names {unknown[:5]} not in class_names {list(class_names)}",
                                "pass the class names the models were trained with")
        frames.append(df)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["label", "prediction"])


def plot_confusion_matrices(
    cells: Mapping[str, Sequence[str | os.PathLike]],
    class_names: Sequence[str],
    path: str | os.PathLike,
    title: str = "",
    dpi: int = 110,
) -> Path:
    """PNG with one row-normalised confusion matrix per method, summed over its repeats.

    Args:
        cells: method → the ``eval/predictions_test.csv`` files of its repeats (columns ``label`` and
            ``prediction`` hold class names); the counts of all files are added up.
        class_names: the classes, in axis order (rows = true class, columns = predicted class).
        path: output PNG (atomic; folder created).
        title: figure title (e.g. the dataset and labelled fraction).
        dpi: resolution.

    Each panel's title gives the method, the accuracy of the summed counts (trace / total) and the
    number of predictions and runs. A row (true class) without samples stays 0.
    """
    names = list(class_names)
    if not cells:
        raise ValueError("confusion matrices: no method given (pass {method: [predictions_test.csv, …]})")
    size = 1.2 + 0.32 * len(names)
    fig = Figure(figsize=(size * len(cells) + 1.2, size + 1.0), layout="constrained")
    axes = fig.subplots(1, len(cells), squeeze=False)
    for ax, (method, files) in zip(axes[0], cells.items()):
        pred = _read_predictions(files, names)
        counts = confusion_matrix(pred["label"], pred["prediction"], labels=names) if len(pred) else \
            np.zeros((len(names),) * 2, int)
        total = counts.sum()
        norm = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)  # (true, predicted), rows sum to 1
        image = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks(range(len(names)), names, rotation=90, fontsize=6)
        ax.set_yticks(range(len(names)), names, fontsize=6)
        ax.set_xlabel("predicted", fontsize=8)
        acc = np.trace(counts) / total if total else math.nan
        ax.set_title(f"{method_label(method)}: accuracy {100 * acc:.1f} %\n(n={total}, {len(files)} runs)", fontsize=8)
    axes[0, 0].set_ylabel("true", fontsize=8)
    fig.colorbar(image, ax=axes[0].tolist(), fraction=0.03, label="fraction of true class")
    if title:
        fig.suptitle(title, fontsize=9)
    return save_png(fig, path, dpi=dpi)
