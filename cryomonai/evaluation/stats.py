"""Statistics of the experiment grid: mean ± std over repeats, and the t-test against random init.

Gupta et al. (2022, §4.3) fine-tune every method on 25/50/75/100 % of the labelled training set,
repeat each experiment 5 times, report the mean accuracy ± standard deviation (Table 1) and test
the difference to random initialisation with a *two-tailed Student's t-test* (Cox, 1982), i.e. the
pooled-variance test of two independent samples (``scipy.stats.ttest_ind(equal_var=True)``), at
α = 0.05. Here:

* :func:`summarise` — n, mean and sample std (``ddof=1``) of a metric per (dataset, method, fraction);
* :func:`ttest_vs_baseline` — the same per method ≠ baseline, next to the baseline's, with ``t`` and
  the two-tailed ``p``;
* :func:`baseline_check` — the fair-baseline check: the fine-tuned baseline against a linear
  probe on its own frozen (random) features;
* :func:`seconds_summary` — the grid's total fine-tuning and pretraining time;
* :func:`timing_table` — where a grid's time went, per phase (set-up vs compute), as Markdown;
* how results are named and ordered in tables and figures: :func:`method_label`,
  :func:`dataset_title`, :func:`order_methods`, :func:`order_datasets`.

The input is the grid's ``results.csv`` (one row per fine-tuned cell; columns ``dataset``, ``snr``,
``method``, ``label_fraction``, ``repeat``, the metrics …) as a DataFrame or a path. NaN values of a
metric (e.g. no linear probe was run) are left out of ``n``.

Example:
    >>> df = pd.DataFrame({"dataset": "d", "label_fraction": 0.25, "method": ["random"] * 3 + ["moco"] * 3,
    ...                    "test_accuracy": [0.15, 0.16, 0.17, 0.38, 0.39, 0.40]})
    >>> row = ttest_vs_baseline(df).iloc[0]
    >>> row["method"], int(row["n"]), round(float(row["mean"]), 3), round(float(row["t"]), 2), bool(row["p"] < 1e-4)
    ('moco', 3, 0.39, 28.17, True)
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable

import numpy as np
import pandas as pd
from scipy.stats import ttest_ind

from cryomonai.errors import CryoDataError

__all__ = ["METHOD_LABELS", "METHOD_ORDER", "baseline_check", "dataset_title", "method_label", "order_datasets", "order_methods",
           "read_results", "seconds_summary", "summarise", "timing_table", "ttest_vs_baseline"]

#: column order of the paper's Table 1 (random init first), then methods the paper did not run
METHOD_ORDER: tuple[str, ...] = ("random", "simclr", "swav", "moco", "vicreg")
#: how a method is named in tables and legends
METHOD_LABELS: dict[str, str] = {"random": "Random init", "simclr": "SimCLR", "swav": "SwAV", "moco": "MoCo",
                                 "vicreg": "VICReg"}
_KEYS = ("dataset", "method", "label_fraction")


def read_results(results: pd.DataFrame | str | os.PathLike, metric: str | None = None) -> pd.DataFrame:
    """The grid's results as a DataFrame (a copy), checked for the key columns and ``metric``.

    Raises:
        CryoDataError: the file cannot be read, or a needed column is missing.
    """
    where = "results" if isinstance(results, pd.DataFrame) else str(results)
    if isinstance(results, pd.DataFrame):
        df = results.copy()
    else:
        try:
            df = pd.read_csv(results)
        except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
            raise CryoDataError(where, f"cannot read the results table ({err})",
                                "give the results.csv the experiment grid wrote") from err
    missing = [c for c in (*_KEYS, *([metric] if metric else [])) if c not in df.columns]
    if missing:
        raise CryoDataError(where, f"missing column(s) {missing} (has {list(df.columns)})",
                            "give the results.csv the experiment grid wrote, or a metric it has")
    df["label_fraction"] = df["label_fraction"].astype(float)
    df["method"] = df["method"].astype(str)
    df["dataset"] = df["dataset"].astype(str)
    return df


def order_methods(methods: Iterable[str], baseline: str = "random") -> list[str]:
    """``methods`` without repeats, ``baseline`` first, then :data:`METHOD_ORDER`, then the rest sorted."""
    present = set(methods)
    known = [m for m in (baseline, *METHOD_ORDER) if m in present]
    known = list(dict.fromkeys(known))
    return known + sorted(present - set(known))


def order_datasets(results: pd.DataFrame) -> list[str]:
    """Datasets by decreasing SNR (∞ first, as in Table 1) when there is an ``snr`` column, else by name."""
    names = results["dataset"].drop_duplicates()
    if "snr" not in results.columns:
        return sorted(names)
    snr = results.groupby("dataset")["snr"].first().astype(float).fillna(-math.inf)
    return sorted(names, key=lambda d: (-snr[d], d))


def method_label(method: str) -> str:
    """How ``method`` is named in tables and legends (:data:`METHOD_LABELS`, else the name itself)."""
    return METHOD_LABELS.get(method, method)


def dataset_title(results: pd.DataFrame, dataset: str) -> str:
    """``"SNR ∞ (snr_inf)"`` (the name in Markdown backticks) when the results have an ``snr`` column (the
    name alone for a user's table, SNR NaN), else the dataset name."""
    if "snr" not in results.columns:
        return dataset
    snr = float(results.loc[results["dataset"] == dataset, "snr"].iloc[0])
    if math.isnan(snr):  # a user's table: no simulated SNR
        return f"`{dataset}`"
    value = "∞" if math.isinf(snr) else f"{snr:g}"
    return f"SNR {value} (`{dataset}`)"


def summarise(results: pd.DataFrame | str | os.PathLike, metric: str = "test_accuracy") -> pd.DataFrame:
    """n, mean and sample std (``ddof=1``; NaN for n = 1) of ``metric`` per (dataset, method, label_fraction).

    Returns:
        columns ``dataset, method, label_fraction, n, mean, std``; rows ordered by dataset
        (:func:`order_datasets`), method (:func:`order_methods`) and fraction. Cells whose metric is
        NaN in every repeat are left out.
    """
    df = read_results(results, metric)
    df = df[np.isfinite(pd.to_numeric(df[metric], errors="coerce"))]
    out = (df.groupby(list(_KEYS))[metric].agg(n="count", mean="mean", std=lambda v: v.std(ddof=1))
           .reset_index())
    out["n"] = out["n"].astype(int)
    return _sorted(out, df, ["dataset", "method", "label_fraction"])


def _sorted(table: pd.DataFrame, results: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """``table`` sorted by ``by``, datasets and methods in display order (:func:`order_datasets`/`order_methods`)."""
    rank = {"dataset": {d: i for i, d in enumerate(order_datasets(results))},
            "method": {m: i for i, m in enumerate(order_methods(results["method"]))}}
    keys = {f"_{c}": table[c].map(rank[c]) if c in rank else table[c] for c in by}
    return table.assign(**keys).sort_values(list(keys), kind="stable").drop(columns=list(keys)).reset_index(drop=True)


def _two_sample(values: np.ndarray, base: np.ndarray) -> tuple[float, float, str]:
    """``(t, two-tailed p, note)`` of Student's t-test ``values`` vs ``base``; NaNs and a reason when undefined."""
    if len(base) == 0:
        return math.nan, math.nan, "no baseline runs"
    if len(values) < 2 or len(base) < 2:
        return math.nan, math.nan, f"n={len(values)} vs baseline n={len(base)}: needs ≥ 2 repeats each"
    if np.ptp(values) == 0 and np.ptp(base) == 0:
        return math.nan, math.nan, "zero variance in both groups"
    res = ttest_ind(values, base, equal_var=True, alternative="two-sided")
    return float(res.statistic), float(res.pvalue), ""


def ttest_vs_baseline(
    results: pd.DataFrame | str | os.PathLike, metric: str = "test_accuracy", baseline: str = "random"
) -> pd.DataFrame:
    """Two-tailed Student's t-test of every method against ``baseline``, per (dataset, label_fraction).

    The test is the paper's (§4.3): independent samples (the repeats of the two methods), pooled
    variance (``scipy.stats.ttest_ind(..., equal_var=True)``, not Welch's), two-sided alternative.
    ``std`` is the sample standard deviation (``ddof=1``), the one Table 1 reports.

    Args:
        results: the grid's results (DataFrame or path of ``results.csv``).
        metric: the column compared (``test_accuracy``, ``linear_probe_accuracy``, ``knn_accuracy`` …).
        baseline: the reference method (random initialisation).

    Returns:
        one row per (dataset, label_fraction, method ≠ baseline) with columns ``dataset,
        label_fraction, method, n, mean, std, baseline_n, baseline_mean, baseline_std, t, p, note``.
        ``t > 0`` means the method beats the baseline. ``t``/``p`` are NaN, with the reason in
        ``note``, when either side has fewer than 2 repeats, there is no baseline run, or both sides
        have zero variance (the statistic is undefined); ``note`` is ``""`` otherwise.
    """
    df = read_results(results, metric)
    df = df[np.isfinite(pd.to_numeric(df[metric], errors="coerce"))]
    rows = []
    for (dataset, fraction), block in df.groupby(["dataset", "label_fraction"], sort=False):
        base = block.loc[block["method"] == baseline, metric].to_numpy(float)
        for method, values in block[block["method"] != baseline].groupby("method")[metric]:
            v = values.to_numpy(float)
            t, p, note = _two_sample(v, base)
            rows.append({"dataset": dataset, "label_fraction": fraction, "method": method, "n": len(v),
                         "mean": v.mean(), "std": v.std(ddof=1) if len(v) > 1 else math.nan,
                         "baseline_n": len(base), "baseline_mean": base.mean() if len(base) else math.nan,
                         "baseline_std": base.std(ddof=1) if len(base) > 1 else math.nan,
                         "t": t, "p": p, "note": note})
    columns = ["dataset", "label_fraction", "method", "n", "mean", "std", "baseline_n", "baseline_mean",
               "baseline_std", "t", "p", "note"]
    return _sorted(pd.DataFrame(rows, columns=columns), df, ["dataset", "label_fraction", "method"])


def baseline_check(results: pd.DataFrame | str | os.PathLike, baseline: str = "random") -> pd.DataFrame:
    """The fair-baseline check per (dataset, label_fraction): does the fine-tuned ``baseline`` beat a
    linear probe on its own frozen (random) features? If the probe wins, the baseline's fine-tuning
    is broken (under-trained), not SSL good.

    Returns:
        columns ``dataset, label_fraction, finetuned_mean, finetuned_std, probe_mean, probe_std,
        passes`` (sample std, ``ddof=1``; ``passes``: the fine-tuned mean is higher); no rows when the
        results have no baseline or no probe.
    """
    columns = ["dataset", "label_fraction", "finetuned_mean", "finetuned_std", "probe_mean", "probe_std", "passes"]
    df = read_results(results)
    base = df[df["method"] == baseline]
    if base.empty or not {"linear_probe_accuracy", "test_accuracy"} <= set(base.columns) \
            or not np.isfinite(base["linear_probe_accuracy"].astype(float)).any():
        return pd.DataFrame(columns=columns)
    rows = []
    for (dataset, fraction), block in base.groupby(["dataset", "label_fraction"]):
        ft, probe = block["test_accuracy"].astype(float), block["linear_probe_accuracy"].astype(float)
        rows.append([dataset, fraction, ft.mean(), ft.std(), probe.mean(), probe.std(), bool(ft.mean() > probe.mean())])
    return pd.DataFrame(rows, columns=columns)


def seconds_summary(results: pd.DataFrame) -> dict[str, float]:
    """Total fine-tuning and pretraining seconds of a results table (selection runs not counted)."""
    pre = results.drop_duplicates(["dataset", "method", "pretrain_seed"])["pretrain_seconds"].fillna(0).sum()
    return {"finetune_seconds": float(results["finetune_seconds"].sum()), "pretrain_seconds": float(pre)}


#: the grid's phases in the order they run
TIMING_PHASES = ("data", "pretrain", "finetune", "evaluate_val", "evaluate_test", "readouts", "report")


def timing_table(timings: pd.DataFrame, wall_seconds: float | None = None, workers: int = 1) -> str:
    """Markdown table of a grid's ``timings.csv``: per phase the steps run, set-up, compute, total and share.

    Set-up is a bundle run's time outside its Ignite engine (parsing, building, opening the data,
    saving); compute is the engine's run (for fine-tuning, with its validation passes). With
    ``wall_seconds`` a closing line gives the wall time of the run that wrote the table and, for
    ``workers`` > 1, says that the steps overlapped (the totals are process time, not wall time).
    """
    df = timings.copy()
    df["total"] = df["setup_seconds"] + df["compute_seconds"]
    grand = float(df["total"].sum()) or 1.0
    order = [p for p in TIMING_PHASES if p in set(df["phase"])] + sorted(set(df["phase"]) - set(TIMING_PHASES))
    lines = ["| phase | steps | set-up (s) | compute (s) | total (s) | share |", "|---|---:|---:|---:|---:|---:|"]
    for phase in order:
        block = df[df["phase"] == phase]
        lines.append(f"| {phase} | {len(block)} | {block['setup_seconds'].sum():.0f} | {block['compute_seconds'].sum():.0f} "
                     f"| {block['total'].sum():.0f} | {100 * block['total'].sum() / grand:.1f} % |")
    lines.append(f"| **all** | {len(df)} | {df['setup_seconds'].sum():.0f} | {df['compute_seconds'].sum():.0f} "
                 f"| {df['total'].sum():.0f} | 100 % |")
    if wall_seconds is not None:
        overlap = (f"; the training steps ran {workers} at a time in worker processes, so the totals above are "
                   "process time and add up to more than the wall time" if workers > 1 else "")
        lines += ["", f"Wall time of the run that finished the grid (a resumed grid: its last invocation only): "
                      f"{wall_seconds:.0f} s{overlap}."]
    return "\n".join(lines) + "\n"
