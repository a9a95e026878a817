"""The experiment grid's report: Table 1 as Markdown, the t-tests, accuracy-vs-labels curves, confusion matrices.

Reproduces the presentation of Gupta et al. (2022): Table 1 (mean ± std test accuracy in % over
the repeats, per SNR and fraction of labelled training data, one column per initialisation, random
init first) with the two-tailed Student's t-test against random init (§4.3), plus figures the paper
discusses but does not tabulate. The statistics are in :mod:`cryomonai.evaluation.stats`, the
figures in :mod:`cryomonai.visualize.results`.

* :func:`write_table` — ``table.md``;
* :func:`write_report` — ``table.md``, the t-tests and the figures from the grid's ``results.csv``.

Accuracies in ``results.csv`` are fractions in [0, 1]; everything shown is in %.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from cryomonai.errors import CryoDataError
from cryomonai.evaluation.stats import (
    arms_vs_baseline,
    dataset_title,
    method_label,
    order_datasets,
    order_methods,
    read_results,
    summarise,
    ttest_vs_baseline,
)
from cryomonai.experiment.advice import advice_lines
from cryomonai.experiment.report_checks import (
    baseline_check_lines,
    deployed_lines,
    edge_lines,
    own_probe_lines,
    statistics_lines,
)
from cryomonai.experiment.report_context import add_context_section
from cryomonai.io.atomic import atomic_write
from cryomonai.visualize.results import plot_accuracy_vs_labels, plot_confusion_matrices, plot_gain_over_baseline

__all__ = ["write_report", "write_table"]

#: extra metrics of results.csv given as smaller tables in table.md when they have values
EXTRA_METRICS: dict[str, str] = {"linear_probe_accuracy": "Linear-probe accuracy (%)",
                                 "knn_accuracy": "kNN accuracy (%)"}


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
             f"vs {method_label(baseline)} over the repeats (Welch's, paired and Holm-adjusted for the main metric: "
             "the statistics table); best mean per row in **bold**.", ""]
    header = ["Labelled (%)"] + [method_label(m) for m in methods]
    all_rows = []
    for dataset in order_datasets(results[results["dataset"].isin(summary["dataset"])]):
        rows = _rows(summary[summary["dataset"] == dataset], tests[tests["dataset"] == dataset], methods, n_usual)
        if per_dataset:
            lines += [f"### {dataset_title(results, dataset)}", "", *_markdown(header, rows), ""]
        else:
            all_rows += [[dataset_title(results, dataset)] + r for r in rows]
    return lines + (_markdown(["Dataset"] + header, all_rows) + [""] if not per_dataset else [])


def _recipe_lines(results: pd.DataFrame, recipes: Mapping[str, Mapping] | None,
                  extended: pd.DataFrame | None = None) -> list[str]:
    """Markdown: the fine-tuning recipe each arm used (chosen on validation), and what each recipe sets."""
    if "recipe" not in results.columns:
        return []
    chosen = results.groupby(["dataset", "method"], sort=False)["recipe"].agg(lambda r: ", ".join(sorted(set(map(str, r)))))
    lines = ["## Fine-tuning recipe per arm", "",
             "Chosen per (dataset, method) by the best mean validation accuracy over the recipe search space "
             "(repeat 0 at the selection fractions; `selection.csv`); the test split was not read to choose.", ""]
    lines += _markdown(["Dataset", "Method", "Recipe"],
                       [[d, method_label(m), f"`{r}`"] for (d, m), r in chosen.items()]) + [""]
    if recipes:
        lines += ["| Recipe | bundle overrides |", "|---:|---:|"]
        lines += [f"| `{name}` | `{json.dumps(dict(o), sort_keys=True)}` |" for name, o in recipes.items()] + [""]
    return lines + edge_lines(results, recipes, extended)


def write_table(
    results: pd.DataFrame | str | os.PathLike,
    path: str | os.PathLike,
    metric: str = "test_accuracy",
    baseline: str = "random",
    recipes: Mapping[str, Mapping] | None = None,
    extended: pd.DataFrame | None = None,
) -> Path:
    """Write ``table.md``: the paper's Table 1 layout for ``metric``, then smaller probe/kNN tables.

    One block per dataset (by decreasing SNR), rows = labelled fraction (25 %, 50 % …), columns =
    methods (random init first), cells ``mean ± std`` in % with one decimal (sample std, ddof=1),
    the best mean of each row in bold, and each method's two-tailed Student's t-test p-value against
    ``baseline`` after its cell, e.g. ``39.3 ± 2.1 (p=0.003)``. ``linear_probe_accuracy`` and
    ``knn_accuracy`` follow as one compact table each when they have non-NaN values; then the
    answer to "which method should I use?" (:mod:`~cryomonai.experiment.advice`, for test accuracy);
    the sections of :mod:`~cryomonai.experiment.report_checks`: the statistics (Student, Welch, paired,
    Holm) after the main table; the fair-baseline check and every arm's fine-tuned-vs-own-probe check,
    both on validation; the deployed classifier; and the fine-tuning recipe of each arm (a ``recipe``
    column; ``recipes`` maps names to their bundle overrides) with the arms at the edge of the recipe
    space, and the recipes the grid added there (``extended``: ``recipes_extended.json`` as a table,
    :func:`~cryomonai.experiment.edges.extensions_table`). Written atomically (folder created).

    Raises:
        CryoDataError: the results lack the key columns or ``metric``, or ``metric`` has no values.
    """
    df = read_results(results, metric)
    if not np.isfinite(pd.to_numeric(df[metric], errors="coerce")).any():
        raise CryoDataError("results", f"no finite {metric!r} values", "run the grid's cells first")
    lines = [f"## {metric.replace('_', ' ').capitalize()} (%), as Table 1 of Gupta et al. (2022)", ""]
    lines += _metric_lines(df, metric, baseline, per_dataset=True)
    if metric == "test_accuracy":
        lines += advice_lines(df, baseline)
    lines += statistics_lines(df, metric, baseline)
    for extra, title in EXTRA_METRICS.items():
        if extra != metric and extra in df.columns and np.isfinite(pd.to_numeric(df[extra], errors="coerce")).any():
            lines += [f"## {title}", "", *_metric_lines(df, extra, baseline, per_dataset=False)]
    lines += baseline_check_lines(df, baseline)
    lines += own_probe_lines(df)
    lines += deployed_lines(df, baseline)
    lines += _recipe_lines(df, recipes, extended)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "w") as f:
        f.write("\n".join(lines).rstrip() + "\n")
    return path


def write_report(
    results_csv: str | os.PathLike,
    out_dir: str | os.PathLike,
    class_names: Sequence[str],
    metric: str = "test_accuracy",
    baseline: str = "random",
    predictions: str = "eval/predictions_test.csv",
    recipes: Mapping[str, Mapping] | None = None,
    extended: pd.DataFrame | None = None,
) -> dict[str, Path]:
    """Write the grid's report into ``out_dir`` from its ``results.csv``.

    Files: ``table.md`` (:func:`write_table`), ``ttest_<metric>.csv`` (:func:`~cryomonai.evaluation.stats.
    ttest_vs_baseline`), ``stats_<metric>.csv`` (:func:`~cryomonai.evaluation.stats.arms_vs_baseline`:
    Student, Welch, paired and Holm; with a ``repeat`` column) and, where a method besides the baseline
    has one, ``gain_over_baseline.png``
    (:func:`~cryomonai.visualize.results.plot_gain_over_baseline`), ``accuracy_vs_labels.png`` (chance =
    1/len(class_names)) and, per dataset,
    ``confusion_<dataset>_f<fraction>.png`` for its lowest and highest labelled fraction (fraction as
    in results.csv, e.g. ``f0.25``), from the ``predictions`` file in each cell's ``run_dir``
    (relative to the folder of ``results_csv``); cells without that file are skipped.

    Returns:
        the files written, by key (``table``, ``ttest``, ``stats``, ``gain``, ``accuracy``, ``confusion_<dataset>_f<fraction>``).
    """
    results_csv, out = Path(results_csv), Path(out_dir)
    df = read_results(results_csv, metric)
    out.mkdir(parents=True, exist_ok=True)
    written = {"table": write_table(df, out / "table.md", metric, baseline, recipes, extended)}
    add_context_section(written["table"], df, len(class_names))  # the context control, where the data has one
    with atomic_write(out / f"ttest_{metric}.csv", "w", newline="") as f:
        ttest_vs_baseline(df, metric, baseline).to_csv(f, index=False, float_format="%.6g")
    written["ttest"] = out / f"ttest_{metric}.csv"
    if "repeat" in df.columns:  # Student, Welch, paired and Holm, as table.md's statistics
        stats = arms_vs_baseline(df, metric, baseline)
        with atomic_write(out / f"stats_{metric}.csv", "w", newline="") as f:
            stats.to_csv(f, index=False, float_format="%.6g")
        written["stats"] = out / f"stats_{metric}.csv"
        compared = stats[stats["baseline_n"] > 0]  # a grid without the baseline arm has nothing to gain over
        if not compared.empty:
            written["gain"] = plot_gain_over_baseline(compared, out / "gain_over_baseline.png", df, metric, baseline)
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
                title = f"{dataset_title(df, dataset).replace('`', '')}, {100 * fraction:g} % labelled"
                written[key] = plot_confusion_matrices(files, class_names, out / f"{key}.png", title)
    return written
