"""Compare two runs of one grid preset: what changed per cell, per arm, and in the conclusions.

The same preset run twice — on two processors, with oneDNN capped to an older instruction set
(``ONEDNN_MAX_CPU_ISA=AVX2``), in float32 vs bf16, before and after a refactor — gives two
``results.csv``. This prints a Markdown report:

* **recipe selection** (when ``selection.csv`` sits next to both): the validation accuracies of
  the selection runs and the recipes chosen;
* **cells**: how many (dataset, method, label fraction, repeat) cells both runs have, how many give
  bit-identical numbers, the chosen recipes, and the largest and median per-cell difference
  (points) of test accuracy, linear probe and kNN;
* **arms**: per (dataset, method, fraction, metric) mean ± std over repeats in each run, the
  difference, Welch's p, and the largest |difference| / its standard error;
* **conclusions**: per (dataset, fraction, SSL method) the SSL − baseline difference and the
  Student's t-test p of each run (:func:`cryomonai.evaluation.stats.ttest_vs_baseline`, as in the
  grid report), each run's verdict (better / worse at p < ``--alpha``, else no difference) and
  whether the verdicts are the same; and
  per fraction whether the fine-tuned baseline beats the probe on its own frozen features in each.

Usage (``cryomonai compare``, :func:`cryomonai.cli.compare`)::

    cryomonai compare docs/grid_cpu_full/results.csv runs/grid_cpu_avx2/results.csv \\
        --names '["native (AVX-512, AMX; bf16)", "AVX2 cap (float32)"]' --png compare.png > compare.md

Exit status 0 when the conclusions agree, 1 when any differs (so a script can check it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from cryomonai.errors import CryoDataError
from cryomonai.evaluation.stats import baseline_check, own_probe_check, read_results, ttest_vs_baseline
from cryomonai.visualize.results import plot_accuracy_vs_labels

__all__ = ["compare", "plot_side_by_side", "report"]

KEYS = ["dataset", "method", "label_fraction", "repeat"]
METRICS = [("test_accuracy", "test accuracy"), ("linear_probe_accuracy", "linear probe"), ("knn_accuracy", "kNN")]


def _read(path: str) -> pd.DataFrame:
    """``read_results`` with ``label_fraction`` rounded, so the two runs' fractions compare equal."""
    df = read_results(path)
    df["label_fraction"] = df["label_fraction"].round(6)
    return df


def _metrics(df: pd.DataFrame) -> list[tuple[str, str]]:
    return [(col, name) for col, name in METRICS if col in df.columns]


def paired_cells(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """The cells both runs have, one row each, columns ``<metric>_a`` / ``<metric>_b`` (and recipes)."""
    cols = [c for c, _ in _metrics(a)] + (["recipe"] if "recipe" in a.columns and "recipe" in b.columns else [])
    return a[KEYS + cols].merge(b[KEYS + cols], on=KEYS, suffixes=("_a", "_b"), validate="one_to_one")


def cell_lines(cells: pd.DataFrame, metrics: list[tuple[str, str]]) -> tuple[list[str], int]:
    """Markdown of the per-cell agreement, and the number of cells identical in every metric."""
    same_all = np.ones(len(cells), dtype=bool)
    lines = ["| metric | cells | bit-identical | largest \\|Δ\\| (points) | median \\|Δ\\| (points) |",
             "|---|---:|---:|---:|---:|"]
    for col, name in metrics:
        x, y = cells[f"{col}_a"].to_numpy(float), cells[f"{col}_b"].to_numpy(float)
        same = x == y
        same_all &= same
        d = 100 * np.abs(y - x)
        lines.append(f"| {name} | {len(cells)} | {int(same.sum())} | {d.max():.2f} | {np.median(d):.2f} |")
    if "recipe_a" in cells.columns:
        agree = int((cells["recipe_a"] == cells["recipe_b"]).sum())
        lines += ["", f"Chosen recipe the same in {agree} of {len(cells)} cells."]
    return lines, int(same_all.sum())


def arm_lines(a: pd.DataFrame, b: pd.DataFrame, metrics: list[tuple[str, str]], names: tuple[str, str]) -> list[str]:
    """Markdown of mean ± std per arm in each run, the difference and Welch's p."""
    lines = [f"| dataset | method | labels | metric | {names[0]} (%) | {names[1]} (%) | difference | Welch p |",
             "|---|---|---:|---|---:|---:|---:|---:|"]
    worst = 0.0
    for (ds, method, frac), block in a.groupby(["dataset", "method", "label_fraction"], sort=False):
        other = b[(b["dataset"] == ds) & (b["method"] == method) & (b["label_fraction"] == frac)]
        if other.empty:
            continue
        for col, name in metrics:
            x, y = 100 * block[col].to_numpy(float), 100 * other[col].to_numpy(float)
            se = (x.var(ddof=1) / len(x) + y.var(ddof=1) / len(y)) ** 0.5 if min(len(x), len(y)) > 1 else 0.0
            p = stats.ttest_ind(x, y, equal_var=False).pvalue if se > 0 else 1.0
            worst = max(worst, abs(y.mean() - x.mean()) / se if se > 0 else 0.0)
            lines.append(f"| `{ds}` | {method} | {100 * frac:g} % | {name} | {x.mean():.1f} ± {x.std(ddof=1):.1f} "
                         f"| {y.mean():.1f} ± {y.std(ddof=1):.1f} | {y.mean() - x.mean():+.1f} | {p:.2f} |")
    return lines + ["", f"Largest |difference| / standard error of the difference: {worst:.2f}"]


def conclusions(a: pd.DataFrame, b: pd.DataFrame, baseline: str, alpha: float) -> pd.DataFrame:
    """Per (dataset, fraction, method): SSL − baseline difference and p in each run, and whether they agree."""
    ta, tb = (ttest_vs_baseline(df, baseline=baseline) for df in (a, b))
    for t in (ta, tb):
        t["diff"] = 100 * (t["mean"] - t["baseline_mean"])
    both = ta.merge(tb, on=["dataset", "label_fraction", "method"], suffixes=("_a", "_b"))
    for side in ("a", "b"):
        sig = both[f"p_{side}"] < alpha
        both[f"verdict_{side}"] = np.where(~sig, "no difference", np.where(both[f"diff_{side}"] > 0, "better", "worse"))
    both["agree"] = both["verdict_a"] == both["verdict_b"]
    return both


def conclusion_lines(both: pd.DataFrame, names: tuple[str, str], baseline: str, alpha: float) -> list[str]:
    lines = [f"| dataset | labels | method vs {baseline} | {names[0]}: Δ (points), p, verdict "
             f"| {names[1]}: Δ (points), p, verdict | same |", "|---|---:|---|---:|---:|:---:|"]
    for r in both.itertuples():
        lines.append(f"| `{r.dataset}` | {100 * r.label_fraction:g} % | {r.method} "
                     f"| {r.diff_a:+.1f}, {r.p_a:.3f}, {r.verdict_a} | {r.diff_b:+.1f}, {r.p_b:.3f}, {r.verdict_b} "
                     f"| {'yes' if r.agree else '**no**'} |")
    return lines + ["", f"Verdict: `better` / `worse` when p < {alpha:g}, else `no difference`."]


def baseline_checks(a: pd.DataFrame, b: pd.DataFrame, baseline: str) -> tuple[pd.DataFrame, str]:
    """Per (dataset, fraction): does the fine-tuned ``baseline`` beat the probe on its frozen features, in each
    run? On the validation split (the grid's check, :func:`~cryomonai.evaluation.stats.own_probe_check`) when
    both runs have a validation probe; on test means only for older results. Returns the table and its split."""
    keys = ["dataset", "label_fraction"]
    if all(_has_val_probe(df, baseline) for df in (a, b)):
        ca, cb = (own_probe_check(df, methods=[baseline])[keys + ["passes"]] for df in (a, b))
        split = "validation split"
    else:
        ca, cb = (baseline_check(df, baseline)[keys + ["passes"]] for df in (a, b))
        split = "test split (these results have no validation probe)"
    return ca.merge(cb, on=keys, suffixes=("_a", "_b")).rename(columns={"passes_a": "a", "passes_b": "b"}), split


def _has_val_probe(df: pd.DataFrame, baseline: str) -> bool:
    base = df[df["method"] == baseline]
    return {"val_linear_probe_accuracy", "best_val_accuracy"} <= set(base.columns) \
        and bool(np.isfinite(base["val_linear_probe_accuracy"].astype(float)).any())


def selection_lines(a_path: str, b_path: str) -> list[str]:
    """Markdown of the recipe selection (``selection.csv`` next to each ``results.csv``), if both have one."""
    paths = [Path(p).with_name("selection.csv") for p in (a_path, b_path)]
    if not all(p.is_file() for p in paths):
        return []
    a, b = (pd.read_csv(p) for p in paths)
    keys = ["dataset", "method", "recipe", "label_fraction"]
    for df in (a, b):
        df["label_fraction"] = df["label_fraction"].astype(float).round(6)
    both = a.merge(b, on=keys, suffixes=("_a", "_b"))
    if both.empty:
        return []
    same = int((both["best_val_accuracy_a"] == both["best_val_accuracy_b"]).sum())
    d = 100 * (both["best_val_accuracy_b"] - both["best_val_accuracy_a"]).abs()
    chosen = [sorted(set(df.loc[df["chosen"].astype(bool), "recipe"] + " (" + df.loc[df["chosen"].astype(bool), "method"] + ")"))
              for df in (a, b)]
    return ["## Recipe selection (validation split, `selection.csv`)", "",
            f"{len(both)} selection runs in common; best validation accuracy bit-identical in {same}, "
            f"largest difference {d.max():.2f} points. Chosen: {', '.join(chosen[0])} vs {', '.join(chosen[1])} — "
            f"**{'the same' if chosen[0] == chosen[1] else 'different'}**.", ""]


def report(a_path: str, b_path: str, names: tuple[str, str], baseline: str = "random", alpha: float = 0.05) -> tuple[str, bool]:
    """The Markdown report of two results tables, and whether every conclusion agrees."""
    a, b = _read(a_path), _read(b_path)
    metrics = _metrics(a)
    cells = paired_cells(a, b)
    if cells.empty:
        raise CryoDataError(f"{a_path} and {b_path}", "have no cell in common", "compare two runs of one preset")
    cell_md, identical = cell_lines(cells, metrics)
    both = conclusions(a, b, baseline, alpha)
    checks, split = baseline_checks(a, b, baseline)
    agree = bool(both["agree"].all()) and bool((checks["a"] == checks["b"]).all())
    check_md = [f"| dataset | labels | {names[0]} | {names[1]} |", "|---|---:|:---:|:---:|"] + [
        f"| `{r.dataset}` | {100 * r.label_fraction:g} % | {'yes' if r.a else 'no'} | {'yes' if r.b else 'no'} |"
        for r in checks.itertuples()]
    out = [f"# {names[0]} vs {names[1]}", "",
           f"`{a_path}` ({len(a)} cells) vs `{b_path}` ({len(b)} cells): {len(cells)} in common, "
           f"{identical} identical in every metric.", "", *selection_lines(a_path, b_path), "## Cells", "", *cell_md, "",
           "## Arms (mean ± std over repeats)", "", *arm_lines(a, b, metrics, names), "",
           f"## Conclusions (Student's t-test against `{baseline}`, as in the grid report)", "",
           *conclusion_lines(both, names, baseline, alpha), "",
           f"Fair-baseline check on the {split}: `{baseline}` fine-tuned beats the linear probe on its own "
           "frozen features (mean accuracy over the repeats ≥ the probe's)", "", *check_md, "",
           f"Every conclusion the same: **{'yes' if agree else 'no'}**."]
    return "\n".join(out) + "\n", agree


def plot_side_by_side(a_path: str, b_path: str, names: tuple[str, str], path: str) -> None:
    """PNG: test accuracy against labelled fraction, one panel per run (the grid report's figure)."""
    frames = []
    for results, name in ((a_path, names[0]), (b_path, names[1])):
        df = read_results(results).drop(columns=["snr"], errors="ignore")
        frames.append(df.assign(dataset=f"{name}" + (f" · {df['dataset'].iloc[0]}" if df["dataset"].nunique() > 1 else "")))
    plot_accuracy_vs_labels(pd.concat(frames, ignore_index=True), path)


def compare(a: str, b: str, names: tuple[str, str] = ("A", "B"), baseline: str = "random", alpha: float = 0.05,
            png: str | None = None) -> tuple[str, bool]:
    """The Markdown report of ``a`` vs ``b`` (two ``results.csv``) and whether every conclusion agrees;
    with ``png``, also both runs' accuracy against labels side by side there."""
    text, agree = report(a, b, tuple(names), baseline, alpha)
    if png:
        plot_side_by_side(a, b, tuple(names), png)
    return text, agree
