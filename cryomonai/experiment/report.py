"""The experiment grid's report: Table 1 as Markdown, accuracy-vs-labels curves, confusion matrices.

Reproduces the presentation of Gupta et al. (2022): Table 1 (mean ± std test accuracy in % over
the repeats, per SNR and fraction of labelled training data, one column per initialisation, random
init first) with the two-tailed Student's t-test against random init (§4.3), plus figures the paper
discusses but does not tabulate. Figures only here; the statistics are in
:mod:`cryomonai.experiment.stats`.

* :func:`write_table` — ``table.md``;
* :func:`plot_accuracy_vs_labels` — accuracy (%) against labelled fraction (%), one panel per dataset;
* :func:`plot_confusion_matrices` — one row-normalised confusion matrix per method;
* :func:`plot_embeddings_before_after` — t-SNE/PCA of the encoder features before/after pretraining;
* :func:`write_report` — all of the above from the grid's ``results.csv``.

Accuracies in ``results.csv`` are fractions in [0, 1]; everything shown is in %.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from cryomonai.errors import CryoDataError
from cryomonai.experiment.stats import (
    METHOD_LABELS,
    order_datasets,
    order_methods,
    read_results,
    summarise,
    ttest_vs_baseline,
)

__all__ = [
    "plot_accuracy_vs_labels",
    "plot_confusion_matrices",
    "plot_embeddings_before_after",
    "write_report",
    "write_table",
]

#: extra metrics of results.csv given as smaller tables in table.md when they have values
EXTRA_METRICS: dict[str, str] = {"linear_probe_accuracy": "Linear-probe accuracy (%)",
                                 "knn_accuracy": "kNN accuracy (%)"}


def _label(method: str) -> str:
    return METHOD_LABELS.get(method, method)


def _dataset_title(results: pd.DataFrame, dataset: str) -> str:
    """``"SNR ∞ (snr_inf)"`` when the results have an ``snr`` column, else the dataset name."""
    if "snr" not in results.columns:
        return dataset
    snr = float(results.loc[results["dataset"] == dataset, "snr"].iloc[0])
    value = "∞" if math.isinf(snr) else ("?" if math.isnan(snr) else f"{snr:g}")
    return f"SNR {value} (`{dataset}`)"


def _format_p(p: float) -> str:
    if not np.isfinite(p):
        return "p=n/a"
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"


def _cell(stat: pd.Series | None, test: pd.Series | None, bold: bool, n_usual: int) -> str:
    """``"**39.3 ± 2.1** (p=0.003)"``: mean ± std in % (1 decimal), bold if best, its n if unusual, p."""
    if stat is None:
        return "–"
    std = f"{100 * stat['std']:.1f}" if np.isfinite(stat["std"]) else "–"
    text = f"{100 * stat['mean']:.1f} ± {std}"
    text = f"**{text}**" if bold else text
    if int(stat["n"]) != n_usual:
        text += f" (n={int(stat['n'])})"
    if test is not None:
        text += f" ({_format_p(float(test['p']))})"
    return text


def _rows(summary: pd.DataFrame, tests: pd.DataFrame, methods: list[str], n_usual: int) -> list[list[str]]:
    """One row of cells per label fraction of one dataset: ``[fraction %, cell per method]``."""
    rows = []
    for fraction, block in summary.groupby("label_fraction"):
        stats = {r["method"]: r for _, r in block.iterrows()}
        best = max(s["mean"] for s in stats.values())
        frac_tests = tests[tests["label_fraction"] == fraction]
        cells = [f"{100 * fraction:g}"]
        for m in methods:
            test = frac_tests[frac_tests["method"] == m]
            cells.append(_cell(stats.get(m), test.iloc[0] if len(test) else None,
                               m in stats and bool(np.isclose(stats[m]["mean"], best, rtol=0, atol=1e-12)), n_usual))
        rows.append(cells)
    return rows


def _markdown(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---:|" * len(header)]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def _metric_lines(results: pd.DataFrame, metric: str, baseline: str, per_dataset: bool) -> list[str]:
    """Markdown of ``metric``: one table per dataset (``per_dataset``) or one with a dataset column."""
    summary, tests = summarise(results, metric), ttest_vs_baseline(results, metric, baseline)
    methods = order_methods(summary["method"], baseline)
    n_usual = int(summary["n"].mode().max())
    n_text = (f"n = {n_usual} repeats per cell" if summary["n"].nunique() == 1 else
              f"n = {summary['n'].min()}–{summary['n'].max()} repeats per cell (a cell with n ≠ {n_usual} shows it)")
    lines = [f"{n_text}; mean ± sample std (ddof=1) in %; p: two-tailed Student's t-test (pooled variance) "
             f"vs {_label(baseline)} over the repeats; best mean per row in **bold**.", ""]
    header = ["Labelled (%)"] + [_label(m) for m in methods]
    all_rows = []
    for dataset in order_datasets(results[results["dataset"].isin(summary["dataset"])]):
        rows = _rows(summary[summary["dataset"] == dataset], tests[tests["dataset"] == dataset], methods, n_usual)
        if per_dataset:
            lines += [f"### {_dataset_title(results, dataset)}", "", *_markdown(header, rows), ""]
        else:
            all_rows += [[_dataset_title(results, dataset)] + r for r in rows]
    return lines + (_markdown(["Dataset"] + header, all_rows) + [""] if not per_dataset else [])


def _recipe_lines(results: pd.DataFrame, recipes: Mapping[str, Mapping] | None) -> list[str]:
    """Markdown: the fine-tuning recipe each arm used (chosen on validation), and what each recipe sets."""
    if "recipe" not in results.columns:
        return []
    chosen = results.groupby(["dataset", "method"], sort=False)["recipe"].agg(lambda r: ", ".join(sorted(set(map(str, r)))))
    lines = ["## Fine-tuning recipe per arm", "",
             "Chosen per (dataset, method) by the best mean validation accuracy over the recipe search space "
             "(repeat 0 at the selection fractions; `selection.csv`); the test split was not read to choose.", ""]
    lines += _markdown(["Dataset", "Method", "Recipe"],
                       [[d, _label(m), f"`{r}`"] for (d, m), r in chosen.items()]) + [""]
    if recipes:
        lines += ["| Recipe | bundle overrides |", "|---:|---:|"]
        lines += [f"| `{name}` | `{json.dumps(dict(o), sort_keys=True)}` |" for name, o in recipes.items()] + [""]
    return lines


def _baseline_check_lines(results: pd.DataFrame, baseline: str) -> list[str]:
    """Markdown: the fine-tuned baseline against a linear probe on its own frozen random features.

    If the probe wins, the baseline's fine-tuning is broken (under-trained), not SSL good.
    """
    need = {"linear_probe_accuracy", "test_accuracy"}
    base = results[results["method"] == baseline]
    if base.empty or not need <= set(base.columns) or not np.isfinite(base["linear_probe_accuracy"].astype(float)).any():
        return []
    rows = []
    for (dataset, fraction), block in base.groupby(["dataset", "label_fraction"]):
        ft, probe = block["test_accuracy"].astype(float), block["linear_probe_accuracy"].astype(float)
        rows.append([dataset, f"{100 * fraction:g}", f"{100 * ft.mean():.1f} ± {100 * ft.std():.1f}",
                     f"{100 * probe.mean():.1f} ± {100 * probe.std():.1f}", "yes" if ft.mean() > probe.mean() else "**no**"])
    return ["## Fair-baseline check: fine-tuned random init vs a linear probe on frozen random features", "",
            "Test accuracy (%) over the repeats; a fine-tuned baseline that does not beat the probe on its own "
            "random features is under-trained.", "",
            *_markdown(["Dataset", "Labelled (%)", f"{_label(baseline)}, fine-tuned", "Random features, linear probe",
                        "fine-tuned beats probe"], rows), ""]


def write_table(
    results: pd.DataFrame | str | os.PathLike,
    path: str | os.PathLike,
    metric: str = "test_accuracy",
    baseline: str = "random",
    recipes: Mapping[str, Mapping] | None = None,
) -> Path:
    """Write ``table.md``: the paper's Table 1 layout for ``metric``, then smaller probe/kNN tables.

    One block per dataset (by decreasing SNR), rows = labelled fraction (25 %, 50 % …), columns =
    methods (random init first), cells ``mean ± std`` in % with one decimal (sample std, ddof=1),
    the best mean of each row in bold, and each method's two-tailed Student's t-test p-value against
    ``baseline`` after its cell, e.g. ``39.3 ± 2.1 (p=0.003)``. ``linear_probe_accuracy`` and
    ``knn_accuracy`` follow as one compact table each when they have non-NaN values; then the
    fine-tuning recipe of each arm (a ``recipe`` column; ``recipes`` maps names to their bundle
    overrides) and the fair-baseline check (fine-tuned ``baseline`` vs the linear probe on its
    frozen random features). Written atomically (folder created).

    Raises:
        CryoDataError: the results lack the key columns or ``metric``, or ``metric`` has no values.
    """
    from cryomonai.io.atomic import atomic_write

    df = read_results(results, metric)
    if not np.isfinite(pd.to_numeric(df[metric], errors="coerce")).any():
        raise CryoDataError("results", f"no finite {metric!r} values", "run the grid's cells first")
    lines = [f"## {metric.replace('_', ' ').capitalize()} (%), as Table 1 of Gupta et al. (2022)", ""]
    lines += _metric_lines(df, metric, baseline, per_dataset=True)
    for extra, title in EXTRA_METRICS.items():
        if extra != metric and extra in df.columns and np.isfinite(pd.to_numeric(df[extra], errors="coerce")).any():
            lines += [f"## {title}", "", *_metric_lines(df, extra, baseline, per_dataset=False)]
    lines += _baseline_check_lines(df, baseline) + _recipe_lines(df, recipes)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "w") as f:
        f.write("\n".join(lines).rstrip() + "\n")
    return path


def plot_accuracy_vs_labels(
    results: pd.DataFrame | str | os.PathLike,
    path: str | os.PathLike,
    num_classes: int | None = None,
    metric: str = "test_accuracy",
    baseline: str = "random",
    dpi: int = 110,
) -> Path:
    """PNG: ``metric`` (%) against labelled fraction (%), one panel per dataset, mean ± std per method.

    Args:
        results: the grid's results (DataFrame or path).
        path: output PNG (atomic; folder created).
        num_classes: draws the chance level ``100 / num_classes`` %; ``None``: taken from a
            ``num_classes`` column of the results if there is one, else no chance line.
        metric: the accuracy column.
        baseline: the method drawn first (random init).
        dpi: resolution.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cryomonai.visualize.figure import save_png

    df = read_results(results, metric)
    summary = summarise(df, metric)
    if num_classes is None and "num_classes" in df.columns:
        num_classes = int(df["num_classes"].dropna().iloc[0])
    datasets = order_datasets(df[df["dataset"].isin(summary["dataset"])])
    methods = order_methods(summary["method"], baseline)
    fig, axes = plt.subplots(1, max(len(datasets), 1), figsize=(3.6 * max(len(datasets), 1) + 1.4, 3.4),
                             squeeze=False, sharey=True)
    for ax, dataset in zip(axes[0], datasets):
        block = summary[summary["dataset"] == dataset]
        for k, m in enumerate(methods):
            rows = block[block["method"] == m].sort_values("label_fraction")
            dodge = (k - (len(methods) - 1) / 2) * 0.8  # percentage points, so error bars do not overlap
            ax.errorbar(100 * rows["label_fraction"] + dodge, 100 * rows["mean"], yerr=100 * rows["std"].fillna(0),
                        marker="o", ms=4, capsize=3, lw=1.4, label=_label(m), ls="--" if m == baseline else "-")
        if num_classes:
            ax.axhline(100 / num_classes, color="0.5", ls=":", lw=1, label=f"chance (1/{num_classes})")
        ax.set_title(_dataset_title(df, dataset).replace("`", ""), fontsize=9)
        ax.set_xlabel("labelled training data (%)")
        ax.set_xticks(sorted(100 * block["label_fraction"].unique()))
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel(f"{metric.replace('_', ' ')} (%)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1 - 1.3 / fig.get_figwidth(), 0.5), fontsize=8,
               frameon=False)
    fig.tight_layout(rect=(0, 0, 1 - 1.4 / fig.get_figwidth(), 1))
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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import confusion_matrix

    from cryomonai.visualize.figure import save_png

    names = list(class_names)
    if not cells:
        raise CryoDataError("confusion matrices", "no method given", "pass {method: [predictions_test.csv, …]}")
    size = 1.2 + 0.32 * len(names)
    fig, axes = plt.subplots(1, len(cells), figsize=(size * len(cells) + 1.2, size + 1.0), squeeze=False,
                             layout="constrained")
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
        ax.set_title(f"{_label(method)}: accuracy {100 * acc:.1f} %\n(n={total}, {len(files)} runs)", fontsize=8)
    axes[0, 0].set_ylabel("true", fontsize=8)
    fig.colorbar(image, ax=axes[0].tolist(), fraction=0.03, label="fraction of true class")
    if title:
        fig.suptitle(title, fontsize=9)
    return save_png(fig, path, dpi=dpi)


def plot_embeddings_before_after(
    features_before: np.ndarray,
    features_after: np.ndarray,
    labels: Sequence[int] | np.ndarray,
    class_names: Sequence[str],
    path: str | os.PathLike,
    method: str = "tsne",
    seed: int = 0,
    titles: tuple[str, str] = ("random-init encoder", "pretrained encoder"),
    dpi: int = 110,
) -> Path:
    """PNG with two 2D maps of the same particles: features (N, F) of the random-init and pretrained encoders.

    The maps come from :func:`cryomonai.evaluation.embedding.embedding_2d` (``method`` ``"tsne"`` or
    ``"pca"``, L2-normalised features); points are coloured by ``labels`` (N,) ∈ 0..L-1, named by
    ``class_names``. (:func:`cryomonai.visualize.embedding.plot_embedding` draws one map per file,
    so the two panels are drawn here.)
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cryomonai.evaluation.embedding import embedding_2d
    from cryomonai.visualize.figure import save_png

    labels = np.asarray(labels, dtype=int).reshape(-1)
    if len(features_before) != len(labels) or len(features_after) != len(labels):
        raise CryoDataError("embeddings", f"{len(features_before)} and {len(features_after)} feature rows for "
                            f"{len(labels)} labels", "embed the same particles with both encoders")
    cmap = plt.get_cmap("tab10" if len(class_names) <= 10 else "tab20")
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 4.3))
    for ax, feats, name in zip(axes, (features_before, features_after), titles):
        xy = embedding_2d(feats, method, seed)  # (N, 2)
        for c, cname in enumerate(class_names):
            sel = labels == c
            ax.scatter(xy[sel, 0], xy[sel, 1], s=14, color=cmap(c % cmap.N), label=cname, edgecolors="none", alpha=0.85)
        ax.set_xticks([]), ax.set_yticks([])
        ax.set_title(f"{name} ({'t-SNE' if method == 'tsne' else 'PCA'}, {len(labels)} particles)", fontsize=9)
    axes[1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    return save_png(fig, path, dpi=dpi)


def write_report(
    results_csv: str | os.PathLike,
    out_dir: str | os.PathLike,
    class_names: Sequence[str],
    metric: str = "test_accuracy",
    baseline: str = "random",
    predictions: str = "eval/predictions_test.csv",
    recipes: Mapping[str, Mapping] | None = None,
) -> dict[str, Path]:
    """Write the grid's report into ``out_dir`` from its ``results.csv``.

    Files: ``table.md`` (:func:`write_table`), ``ttest_<metric>.csv`` (:func:`~cryomonai.experiment.stats.
    ttest_vs_baseline`), ``accuracy_vs_labels.png`` (chance = 1/len(class_names)) and, per dataset,
    ``confusion_<dataset>_f<fraction>.png`` for its lowest and highest labelled fraction (fraction as
    in results.csv, e.g. ``f0.25``), from the ``predictions`` file in each cell's ``run_dir``
    (relative to the folder of ``results_csv``); cells without that file are skipped.

    Returns:
        the files written, by key (``table``, ``ttest``, ``accuracy``, ``confusion_<dataset>_f<fraction>``).
    """
    results_csv, out = Path(results_csv), Path(out_dir)
    df = read_results(results_csv, metric)
    out.mkdir(parents=True, exist_ok=True)
    written = {"table": write_table(df, out / "table.md", metric, baseline, recipes)}
    from cryomonai.io.atomic import atomic_write

    with atomic_write(out / f"ttest_{metric}.csv", "w", newline="") as f:
        ttest_vs_baseline(df, metric, baseline).to_csv(f, index=False, float_format="%.6g")
    written["ttest"] = out / f"ttest_{metric}.csv"
    written["accuracy"] = plot_accuracy_vs_labels(df, out / "accuracy_vs_labels.png", len(class_names), metric,
                                                  baseline)
    if "run_dir" not in df.columns:
        return written
    for dataset in order_datasets(df):
        block = df[df["dataset"] == dataset]
        for fraction in sorted({block["label_fraction"].min(), block["label_fraction"].max()}):
            cell = block[block["label_fraction"] == fraction]
            files = {m: [results_csv.parent / str(d) / predictions for d in cell.loc[cell["method"] == m, "run_dir"]]
                     for m in order_methods(cell["method"], baseline)}
            files = {m: [f for f in fs if f.is_file()] for m, fs in files.items()}
            files = {m: fs for m, fs in files.items() if fs}
            if files:
                key = f"confusion_{dataset}_f{fraction:g}"
                title = f"{_dataset_title(df, dataset).replace('`', '')}, {100 * fraction:g} % labelled"
                written[key] = plot_confusion_matrices(files, class_names, out / f"{key}.png", title)
    return written
