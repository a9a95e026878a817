"""The report's answer to "which method should I use, at this SNR, with this many labels?".

Per dataset × labelled fraction, from the grid's ``results.csv``:

* every arm is scored as it would be shipped: its *deployed* classifier (the better of probe and
  fine-tune on validation, :func:`~cryomonai.experiment.checks.deployed`), so the validation score of a
  repeat is the larger of ``best_val_accuracy`` and ``val_linear_probe_accuracy``; grids without a
  validation probe fall back to the fine-tuned model alone;
* the **best SSL arm** is the pretrained arm with the highest mean validation score, and the
  **advice** is that arm if it is above random init on validation, else random init. The test split is
  not read to choose;
* the chosen SSL arm's test accuracy is then compared with random init's deployed classifier (Student,
  Welch and paired t-tests over the repeats, :func:`~cryomonai.evaluation.stats.compare_arms`), each
  Holm-adjusted over the advice's comparisons (one per dataset × fraction). A gain counts as
  **significant** when the advice is that arm (above random init on validation), the gain is positive and
  its Holm-adjusted Welch p is below ``alpha``;
* per dataset, the fewest labels at which the validation-chosen classifier's mean test accuracy reaches
  random init's with the most labels (the paper's "SSL with 10 % of the labels matches supervised
  training with all of them").

* :func:`advise` and :func:`labels_to_match` — the tables; :func:`advice_lines` — ``table.md``'s section.

Example:
    >>> import pandas as pd
    >>> rows = [{"dataset": "d", "method": m, "label_fraction": 0.1, "repeat": r,
    ...          "best_val_accuracy": v + 0.01 * r, "test_accuracy": v + 0.01 * r}
    ...         for m, v in (("random", 0.30), ("simclr", 0.45)) for r in range(3)]
    >>> a = advise(pd.DataFrame(rows)).iloc[0]
    >>> str(a["choice"]), round(float(100 * a["mean_difference"]), 1)
    ('simclr', 15.0)
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from cryomonai.evaluation.stats import (
    compare_arms,
    dataset_title,
    holm,
    method_label,
    order_datasets,
    order_methods,
    read_results,
)
from cryomonai.experiment.checks import deployed

__all__ = ["advice_lines", "advice_matrix", "advise", "deployed_scores", "labels_to_match"]

_TESTS = ("student", "welch", "paired")


def _numbers(df: pd.DataFrame, column: str) -> pd.Series:
    return pd.to_numeric(df[column], errors="coerce") if column in df.columns else pd.Series(math.nan, index=df.index)


def deployed_scores(results: pd.DataFrame) -> pd.DataFrame:
    """Each row's deployed classifier: ``val`` (its validation accuracy), ``test`` and ``kind``.

    ``val`` is the larger of ``best_val_accuracy`` and ``val_linear_probe_accuracy`` (the fine-tuned model
    on ties or without a probe), ``test`` the chosen one's test accuracy (``deployed_test_accuracy`` when
    the grid wrote it, else recomputed from the same rule), ``kind`` ``"probe"`` or ``"finetune"``.
    """
    df = results.copy()
    chosen = [deployed(row) for row in df.to_dict("records")]  # the report's one rule (validation only)
    df["kind"] = [c["deployed"] for c in chosen]
    df["test"] = [c["deployed_test_accuracy"] for c in chosen]
    df["val"] = np.where(df["kind"] == "probe", _numbers(df, "val_linear_probe_accuracy"),
                         _numbers(df, "best_val_accuracy"))
    return df


def _by_repeat(block: pd.DataFrame, method: str, column: str) -> pd.Series:
    arm = block[block["method"] == method]
    return arm.set_index("repeat")[column].astype(float) if "repeat" in arm.columns else arm[column].astype(float)


def advise(results: pd.DataFrame, baseline: str = "random", alpha: float = 0.05) -> pd.DataFrame:
    """Per dataset × fraction: the best SSL arm on validation, the advice, and its test gain over ``baseline``.

    Returns:
        one row per (dataset, label_fraction) that has ``baseline`` and at least one other arm, columns
        ``dataset, label_fraction, best_ssl, choice, kind, probe_share, ssl_val, baseline_val, ssl_test,
        ssl_test_std, baseline_test, baseline_test_std, mean_difference, n, baseline_n, n_pairs,
        student_p, welch_p, paired_p`` and each ``*_p_holm`` (over the rows), ``significant`` and
        ``note``; accuracies are fractions.
    """
    df = deployed_scores(read_results(results))
    df = df[np.isfinite(df["val"].astype(float)) & np.isfinite(df["test"].astype(float))]
    rows = []
    for dataset in order_datasets(df):
        for fraction, block in df[df["dataset"] == dataset].groupby("label_fraction"):
            arms = order_methods(block["method"], baseline)
            if baseline not in arms or len(arms) < 2:
                continue
            val = {m: float(block.loc[block["method"] == m, "val"].mean()) for m in arms}
            best = max(arms[1:], key=lambda m: val[m])  # first in order on ties
            chosen = best if val[best] > val[baseline] else baseline
            arm, base = _by_repeat(block, best, "test"), _by_repeat(block, baseline, "test")
            stats = compare_arms(arm, base)
            kinds = block.loc[block["method"] == chosen, "kind"]
            rows.append({"dataset": dataset, "label_fraction": float(fraction), "best_ssl": best, "choice": chosen,
                         "kind": "probe" if (kinds == "probe").sum() > len(kinds) / 2 else "finetune",
                         "probe_share": f"{int((kinds == 'probe').sum())}/{len(kinds)}",
                         "ssl_val": val[best], "baseline_val": val[baseline],
                         "ssl_test": float(arm.mean()), "ssl_test_std": float(arm.std()) if len(arm) > 1 else math.nan,
                         "baseline_test": float(base.mean()),
                         "baseline_test_std": float(base.std()) if len(base) > 1 else math.nan,
                         **{k: stats[k] for k in ("mean_difference", "n", "baseline_n", "n_pairs", "student_p",
                                                  "welch_p", "paired_p", "note")}})
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    for test in _TESTS:
        out[f"{test}_p_holm"] = holm(out[f"{test}_p"].to_numpy(float))
    out["significant"] = (out["choice"] == out["best_ssl"]) & (out["mean_difference"] > 0) & (out["welch_p_holm"] < alpha)
    return out


def labels_to_match(advice: pd.DataFrame, results: pd.DataFrame, baseline: str = "random") -> pd.DataFrame:
    """Per dataset: the fewest labels at which the validation-chosen classifier (``advice``'s ``choice``)
    reaches, on mean test accuracy, ``baseline`` with the dataset's largest fraction.

    Returns:
        columns ``dataset, top_fraction, baseline_top`` (random init's deployed test mean there),
        ``fraction`` (NaN when no smaller fraction reaches it), ``choice`` and ``choice_test``.
    """
    df = deployed_scores(read_results(results))
    rows = []
    for dataset, block in advice.groupby("dataset", sort=False):
        top = float(block["label_fraction"].max())
        data = df[(df["dataset"] == dataset) & (df["label_fraction"] == top) & (df["method"] == baseline)]
        target = float(data["test"].astype(float).mean())
        row = {"dataset": dataset, "top_fraction": top, "baseline_top": target, "fraction": math.nan,
               "choice": "", "choice_test": math.nan}
        for r in block.sort_values("label_fraction").itertuples():
            if r.label_fraction >= top:
                break
            test = r.ssl_test if r.choice == r.best_ssl else r.baseline_test
            if test >= target:
                row.update(fraction=r.label_fraction, choice=r.choice, choice_test=test)
                break
        rows.append(row)
    return pd.DataFrame(rows)


def _pct(mean: float, std: float) -> str:
    return f"{100 * mean:.1f} ± {100 * std:.1f}" if np.isfinite(std) else f"{100 * mean:.1f}"


def _p(p: float) -> str:
    return "n/a" if not np.isfinite(p) else "<0.001" if p < 0.001 else f"{p:.3f}"


def _verdict(r: pd.Series) -> str:
    if r["choice"] != r["best_ssl"]:
        return "random init: no SSL arm above it on validation"
    use = f"{method_label(r['choice'])} ({'probe' if r['kind'] == 'probe' else 'fine-tuned'})"
    if r["significant"]:
        return f"**{use}**: significantly better"
    if r["mean_difference"] > 0:
        return f"{use}: ahead, not significantly"
    return f"{use}: ahead on validation, not on test"


def advice_matrix(advice: pd.DataFrame, results: pd.DataFrame, baseline: str = "random") -> list[str]:
    """Markdown: the advice at a glance, one row per dataset and one column per labelled fraction; a cell
    is the arm to use ("probe" where most repeats deploy its probe) with its test gain over ``baseline`` and
    Holm-adjusted Welch p, in bold where significant (:func:`advise`'s rows, nothing recomputed)."""
    fractions = sorted(advice["label_fraction"].unique())
    by = advice.set_index(["dataset", "label_fraction"])
    rows = []
    for dataset in dict.fromkeys(advice["dataset"]):
        cells = []
        for f in fractions:
            if (dataset, f) not in by.index:
                cells.append("–")
                continue
            r = by.loc[(dataset, f)]
            if r["choice"] != r["best_ssl"]:
                cells.append(f"{method_label(baseline)} ({method_label(r['best_ssl'])} {100 * r['mean_difference']:+.1f})")
                continue
            use = method_label(r["choice"]) + (" probe" if r["kind"] == "probe" else "")
            text = f"{use} {100 * r['mean_difference']:+.1f} (p {_p(r['welch_p_holm'])})"
            cells.append(f"**{text}**" if r["significant"] else text)
        rows.append(f"| {dataset_title(results, dataset)} | " + " | ".join(cells) + " |")
    return ["| Dataset | " + " | ".join(f"{100 * f:g} % labelled" for f in fractions) + " |",
            "|---|" + "---|" * len(fractions), *rows]


def advice_lines(results: pd.DataFrame, baseline: str = "random", alpha: float = 0.05) -> list[str]:
    """Markdown: ``table.md``'s "Which method to use" section (none without ``baseline`` and another arm)."""
    df = read_results(results)
    advice = advise(df, baseline, alpha)
    if advice.empty:
        return []
    base = method_label(baseline)
    rows = [[dataset_title(df, r["dataset"]), f"{100 * r['label_fraction']:g}", _verdict(r),
             method_label(r["best_ssl"]), f"{100 * r['ssl_val']:.1f} / {100 * r['baseline_val']:.1f}",
             _pct(r["ssl_test"], r["ssl_test_std"]) + f" ({r['probe_share'] if r['choice'] == r['best_ssl'] else '–'})",
             _pct(r["baseline_test"], r["baseline_test_std"]), f"{100 * r['mean_difference']:+.1f}",
             *[_p(r[f"{t}_p_holm"]) for t in _TESTS]] for _, r in advice.iterrows()]
    lines = ["## Which method to use", "",
             f"Per dataset and labelled fraction, each arm as it would be shipped (its deployed classifier: the better "
             f"of probe and fine-tune on validation). The best SSL arm is the one with the highest mean validation "
             f"accuracy; use it if it is above {base} on validation, else {base}. The test split is not read to "
             f"choose (repeat 0's validation score is its recipe's selection run, the best of several on this split: "
             f"validation means lean up, a little more for an arm that tried more recipes). Test accuracy (%) is "
             f"mean ± sample std over the repeats, (probe k/n): repeats whose deployed classifier is the probe; "
             f"Δ: best SSL arm − {base}, in points; p: Student, Welch and paired t-tests, "
             f"each Holm-adjusted over this table's {len(advice)} comparisons (a test undefined for a row, n/a, is left "
             f"out of its family). Significantly better: the SSL arm is the advice, Δ > 0 and Holm-adjusted Welch "
             f"p < {alpha:g}.", "",
             f"At a glance: the arm to use, its test gain over {base} in points and the Holm-adjusted Welch p, bold "
             f"where significantly better; where {base} is the advice, the best SSL arm's test gain is in brackets.",
             "", *advice_matrix(advice, df, baseline), "",
             "| Dataset | Labelled (%) | Use | best SSL arm | val: SSL / " + base + " | SSL test | " + base
             + " test | Δ | Holm Student | Holm Welch | Holm paired |",
             "|" + "---:|" * 11, *["| " + " | ".join(r) + " |" for r in rows], ""]
    match = labels_to_match(advice, df, baseline)
    if len(match):
        said = []
        for r in match.itertuples():
            title = dataset_title(df, r.dataset)
            if np.isfinite(r.fraction):
                said.append(f"- {title}: **{100 * r.fraction:g} %** of the labels ({method_label(r.choice)}, "
                            f"{100 * r.choice_test:.1f} %) reach {base} with {100 * r.top_fraction:g} % "
                            f"({100 * r.baseline_top:.1f} %).")
            else:
                said.append(f"- {title}: no smaller fraction reaches {base} with {100 * r.top_fraction:g} % "
                            f"({100 * r.baseline_top:.1f} %).")
        lines += [f"Labels needed: the fewest labels at which the classifier chosen above reaches, on mean test "
                  f"accuracy, {base} with the most labels (a readout, not a test).", "", *said, ""]
    return lines
