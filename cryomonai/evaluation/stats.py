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
* :func:`compare_arms` — two arms' per-repeat accuracies, paired by repeat: the mean difference and
  Student's, Welch's and the paired t-test side by side; :func:`holm` — the Holm-Bonferroni
  correction of a family of p-values; :func:`arms_vs_baseline` — both over a results table;
* :func:`probe_margins` — fine-tuned model vs the linear probe on its own frozen features, per repeat,
  on validation (issue 26: the fair-baseline check, and "every arm beats its own probe");
  :func:`own_probe_check` — the same over a results table;
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
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
from scipy.stats import ttest_ind, ttest_rel

from cryomonai.errors import CryoDataError

__all__ = ["METHOD_LABELS", "METHOD_ORDER", "arms_vs_baseline", "baseline_check", "compare_arms", "dataset_title", "holm",
           "method_label", "order_datasets", "order_methods", "own_probe_check", "probe_margins", "read_results",
           "seconds_summary", "summarise", "timing_table", "ttest_vs_baseline"]

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
    if np.ptp(values) <= _FLAT and np.ptp(base) <= _FLAT:  # as compare_arms: float noise is no variance
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


# ---- two arms, paired by repeat; Holm; fine-tuned vs its own probe -------------------------------

#: one value per repeat: a list or array (paired by position) or a Series indexed by repeat
Values = Sequence[float] | np.ndarray | pd.Series


def _pair(a: Values, b: Values, what: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(a, b, a_paired, b_paired)``: each arm's finite values, and the repeats both have (finite in both).

    Two ``pd.Series`` are paired on their index (the repeat); anything else by position (equal lengths).
    """
    if isinstance(a, pd.Series) and isinstance(b, pd.Series):
        if not (a.index.is_unique and b.index.is_unique):
            raise CryoDataError(what, "repeats appear twice in one arm", "give one value per repeat (index = repeat)")
        both = a.index.intersection(b.index, sort=False)
        a_pair, b_pair = a.loc[both].to_numpy(float), b.loc[both].to_numpy(float)
    else:
        a_pair, b_pair = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
        if len(a_pair) != len(b_pair):
            raise CryoDataError(what, f"{len(a_pair)} vs {len(b_pair)} repeats cannot be paired by position",
                                "give one value per repeat for both, in repeat order, or pd.Series indexed by repeat")
    keep = np.isfinite(a_pair) & np.isfinite(b_pair)
    a_all, b_all = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    return a_all[np.isfinite(a_all)], b_all[np.isfinite(b_all)], a_pair[keep], b_pair[keep]


#: spread below which values count as constant (accuracies are fractions: rounding error, not variance)
_FLAT = 1e-12


def compare_arms(arm: Values, baseline: Values) -> dict[str, float | int | str]:
    """Two arms' per-repeat accuracies: the mean difference and three two-sided t-tests side by side.

    * Student's (pooled variance, the paper's test): ``scipy.stats.ttest_ind(equal_var=True)``;
    * Welch's (unequal variances): ``ttest_ind(equal_var=False)``;
    * paired, on the per-repeat differences (repeat ``r`` of both arms shares its labelled subset and
      seed): ``scipy.stats.ttest_rel``.

    Args:
        arm, baseline: accuracies, one per repeat; two ``pd.Series`` are paired on their index (the
            repeat), arrays or lists by position. NaNs are left out (of the pairs too).

    Returns:
        ``n``, ``baseline_n``, ``n_pairs``, ``mean``, ``baseline_mean``, ``mean_difference`` (``mean −
        baseline_mean``), ``student_t``, ``student_p``, ``welch_t``, ``welch_p``, ``paired_t``,
        ``paired_p`` and ``note``: a test that is undefined (fewer than 2 values, or no variance) is NaN
        and ``note`` says why (``""`` when all three are defined).

    Example:
        >>> r = compare_arms([0.30, 0.35, 0.32], [0.25, 0.31, 0.30])
        >>> round(r["mean_difference"], 3), round(r["student_p"], 3), round(r["welch_p"], 3), round(r["paired_p"], 3)
        (0.037, 0.195, 0.199, 0.053)
    """
    a, b, a_pair, b_pair = _pair(arm, baseline, "compare_arms")
    out: dict[str, float | int | str] = {
        "n": len(a), "baseline_n": len(b), "n_pairs": len(a_pair),
        "mean": float(a.mean()) if len(a) else math.nan, "baseline_mean": float(b.mean()) if len(b) else math.nan}
    out["mean_difference"] = out["mean"] - out["baseline_mean"]
    notes = []
    for name, equal_var in (("student", True), ("welch", False)):
        out[f"{name}_t"] = out[f"{name}_p"] = math.nan
        if len(a) < 2 or len(b) < 2:
            notes.append(f"{name}: needs ≥ 2 repeats per arm")
        elif np.ptp(a) <= _FLAT and np.ptp(b) <= _FLAT:
            notes.append(f"{name}: no variance")
        else:
            res = ttest_ind(a, b, equal_var=equal_var, alternative="two-sided")
            out[f"{name}_t"], out[f"{name}_p"] = float(res.statistic), float(res.pvalue)
    out["paired_t"] = out["paired_p"] = math.nan
    diff = a_pair - b_pair
    if len(diff) < 2:
        notes.append("paired: needs ≥ 2 repeats in both arms")
    elif np.ptp(diff) <= _FLAT:
        notes.append("paired: every repeat differs by the same amount (no variance)")
    else:
        res = ttest_rel(a_pair, b_pair, alternative="two-sided")
        out["paired_t"], out["paired_p"] = float(res.statistic), float(res.pvalue)
    out["note"] = "; ".join(notes)
    return out


def holm(pvalues: Values) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values of a family of tests (Holm 1979), in the input's order.

    Step-down: with the ``m`` p-values sorted, ``p_(1) ≤ … ≤ p_(m)``, the ``i``-th (1-based) becomes
    ``max_{j ≤ i} min(1, (m − j + 1) · p_(j))``: monotone in the sorted order and capped at 1. Rejecting
    where the adjusted value is below α controls the family-wise error rate at α. NaN p-values (an
    undefined test) stay NaN and are not counted in ``m``.

    Example:
        >>> holm([0.01, 0.04, 0.03]).tolist()
        [0.03, 0.06, 0.06]
    """
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    flat, res = p.ravel(), out.ravel()
    idx = np.flatnonzero(np.isfinite(flat))
    order = idx[np.argsort(flat[idx], kind="stable")]
    m = len(order)
    scaled = np.minimum(1.0, (m - np.arange(m)) * flat[order])
    res[order] = np.maximum.accumulate(scaled)
    return res.reshape(p.shape)


def arms_vs_baseline(results: pd.DataFrame | str | os.PathLike, metric: str = "test_accuracy",
                     baseline: str = "random") -> pd.DataFrame:
    """:func:`compare_arms` of every method against ``baseline`` per (dataset, label_fraction), paired on
    ``repeat``, with the Holm correction (:func:`holm`) over the whole table.

    The family is every row of the returned table (the grid's comparisons of a method with the baseline),
    separately for each test; to correct over another family, call :func:`holm` on a subset.

    Returns:
        columns ``dataset, label_fraction, method, n, baseline_n, n_pairs, mean, baseline_mean,
        mean_difference, student_t, student_p, welch_t, welch_p, paired_t, paired_p, note,
        student_p_holm, welch_p_holm, paired_p_holm``.
    """
    df = read_results(results, metric)
    if "repeat" not in df.columns:
        raise CryoDataError("results", "no 'repeat' column to pair the arms on", "give the grid's results.csv")
    df = df[np.isfinite(pd.to_numeric(df[metric], errors="coerce"))]
    rows = []
    for (dataset, fraction), block in df.groupby(["dataset", "label_fraction"], sort=False):
        base = block[block["method"] == baseline].set_index("repeat")[metric].astype(float)
        for method, arm in block[block["method"] != baseline].groupby("method"):
            stats = compare_arms(arm.set_index("repeat")[metric].astype(float), base)
            rows.append({"dataset": dataset, "label_fraction": fraction, "method": method, **stats})
    columns = ["dataset", "label_fraction", "method", "n", "baseline_n", "n_pairs", "mean", "baseline_mean",
               "mean_difference", "student_t", "student_p", "welch_t", "welch_p", "paired_t", "paired_p", "note"]
    out = pd.DataFrame(rows, columns=columns)
    for test in ("student", "welch", "paired"):
        out[f"{test}_p_holm"] = holm(out[f"{test}_p"].to_numpy(float)) if len(out) else []
    return _sorted(out, df, ["dataset", "label_fraction", "method"])


def probe_margins(finetuned: Values, probe: Values, tol: float = 1e-9) -> dict[str, object]:
    """Fine-tuned model vs the linear probe on its own frozen features, per repeat (on validation).

    Issue 26's check, for the fair baseline (random init against a probe on random features) and for
    every arm ("fine-tuning keeps what pretraining learned"). **Rule:** it passes when the fine-tuned
    model's mean accuracy over the repeats is at least the probe's (mean margin ≥ 0, within ``tol`` for
    floating-point noise); the per-repeat margins are reported with it, and ``n_below`` counts the
    repeats where the probe wins, so a pass carried by one repeat shows.

    Args:
        finetuned, probe: validation accuracies, one per repeat; two ``pd.Series`` are paired on their
            index (the repeat), arrays or lists by position. Repeats missing (NaN) on either side are
            left out.
        tol: margins within ``tol`` of 0 count as ties (a tie passes, and is not "below").

    Returns:
        ``n``, ``margins`` (array, fine-tuned − probe per repeat), ``margins_text`` (percentage points,
        e.g. ``"+4.4, +1.2, +0.0"``), ``finetuned_mean``, ``probe_mean``, ``mean_margin``,
        ``min_margin``, ``n_below`` and ``passes``.

    Example:
        >>> r = probe_margins([0.150, 0.140, 0.157], [0.106, 0.128, 0.157])
        >>> r["margins_text"], round(r["mean_margin"], 4), r["n_below"], r["passes"]
        ('+4.4, +1.2, +0.0', 0.0187, 0, True)
    """
    _, _, ft, pr = _pair(finetuned, probe, "probe_margins")
    margins = ft - pr
    if not len(margins):
        raise CryoDataError("probe_margins", "no repeat has both a fine-tuned and a probe accuracy",
                            "compute the probe on validation for the same repeats")
    mean_margin = float(margins.mean())
    return {"n": len(margins), "margins": margins,
            "margins_text": ", ".join(f"{100 * m:+.1f}" for m in margins),
            "finetuned_mean": float(ft.mean()), "probe_mean": float(pr.mean()), "mean_margin": mean_margin,
            "min_margin": float(margins.min()), "n_below": int((margins < -tol).sum()),
            "passes": bool(mean_margin >= -tol)}


def own_probe_check(results: pd.DataFrame | str | os.PathLike, finetuned: str = "best_val_accuracy",
                    probe: str = "val_linear_probe_accuracy", methods: Iterable[str] | None = None) -> pd.DataFrame:
    """:func:`probe_margins` per (dataset, method, label_fraction), paired on ``repeat``: does each arm's
    fine-tuned model beat the linear probe on its own frozen features, on validation?

    ``methods`` ``None``: every arm (issue 26, "fine-tuning must keep what pretraining learned");
    ``["random"]``: the fair-baseline check. The columns read are validation accuracies, never test.
    Note that ``best_val_accuracy`` is the best of the run's validations (the checkpoint chosen on
    validation), so the fine-tuned side is the model as deployed, not an unbiased estimate.

    Returns:
        columns ``dataset, method, label_fraction, n, finetuned_mean, probe_mean, mean_margin, margins,
        min_margin, n_below, passes`` (``margins``: :func:`probe_margins`' text); cells with no probe
        value are left out.

    Raises:
        CryoDataError: a column is missing.
    """
    df = read_results(results, finetuned)
    for column in (probe, "repeat"):
        if column not in df.columns:
            raise CryoDataError("results", f"no {column!r} column", "compute the validation probe per cell first")
    if methods is not None:
        df = df[df["method"].isin(list(methods))]
    df = df[np.isfinite(df[probe].astype(float)) & np.isfinite(df[finetuned].astype(float))]
    rows = []
    for (dataset, method, fraction), block in df.groupby(list(_KEYS), sort=False):
        block = block.set_index("repeat")
        r = probe_margins(block[finetuned].astype(float), block[probe].astype(float))
        rows.append({"dataset": dataset, "method": method, "label_fraction": fraction, "n": r["n"],
                     "finetuned_mean": r["finetuned_mean"], "probe_mean": r["probe_mean"],
                     "mean_margin": r["mean_margin"], "margins": r["margins_text"], "min_margin": r["min_margin"],
                     "n_below": r["n_below"], "passes": r["passes"]})
    columns = ["dataset", "method", "label_fraction", "n", "finetuned_mean", "probe_mean", "mean_margin", "margins",
               "min_margin", "n_below", "passes"]
    out = pd.DataFrame(rows, columns=columns)
    return _sorted(out, df, ["dataset", "method", "label_fraction"]) if len(out) else out


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
