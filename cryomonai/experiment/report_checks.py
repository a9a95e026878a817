"""``table.md``'s sections on the protocol's checks (issue 26), from the grid's ``results.csv``.

* :func:`statistics_lines` — every arm against the baseline per dataset × fraction: Student's, Welch's
  and the paired t-test side by side, each Holm-adjusted over the grid's comparisons
  (:func:`~cryomonai.evaluation.stats.arms_vs_baseline`);
* :func:`baseline_check_lines` — the fair-baseline check **on validation**: the fine-tuned random init
  against a linear probe on its own frozen random features, with the per-repeat margins; a failure is
  said in bold (the comparison with the baseline is then not evidence);
* :func:`own_probe_lines` — the same for every arm: does fine-tuning keep what the frozen features
  already give (:func:`~cryomonai.evaluation.stats.own_probe_check`)?
* :func:`deployed_lines` — each arm's deployed classifier (the better of probe and fine-tune on
  validation, :func:`~cryomonai.experiment.checks.deployed`): its test accuracy and how often the probe won;
* :func:`edge_lines` — arms whose chosen recipe is at the edge of the recipe space in a rate
  (:func:`~cryomonai.experiment.checks.recipe_edges`).

Every function returns Markdown lines (none when the results lack what it needs, or a line saying so).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from cryomonai.evaluation.stats import (
    arms_vs_baseline,
    dataset_title,
    method_label,
    order_datasets,
    order_methods,
    own_probe_check,
)
from cryomonai.experiment.checks import recipe_edges

__all__ = ["baseline_check_lines", "deployed_lines", "edge_lines", "own_probe_lines", "statistics_lines"]

#: the validation columns of the own-probe checks
FINETUNED_VAL, PROBE_VAL = "best_val_accuracy", "val_linear_probe_accuracy"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---:|" * len(header),
            *["| " + " | ".join(r) + " |" for r in rows], ""]


def _p(p: float) -> str:
    return "n/a" if not np.isfinite(p) else "<0.001" if p < 0.001 else f"{p:.3f}"


def _has(results: pd.DataFrame, column: str) -> bool:
    return column in results.columns and bool(np.isfinite(pd.to_numeric(results[column], errors="coerce")).any())


def statistics_lines(results: pd.DataFrame, metric: str = "test_accuracy", baseline: str = "random") -> list[str]:
    """Markdown: Student's, Welch's and the paired t-test of every arm vs ``baseline`` on ``metric``, with Holm."""
    if baseline not in set(results["method"]) or "repeat" not in results.columns:
        return []
    stats = arms_vs_baseline(results, metric, baseline)
    if stats.empty:
        return []
    rows = [[dataset_title(results, r.dataset), f"{100 * r.label_fraction:g}", method_label(r.method),
             f"{100 * r.mean_difference:+.1f}", f"{r.n} / {r.baseline_n} / {r.n_pairs}",
             _p(r.student_p), _p(r.welch_p), _p(r.paired_p),
             _p(r.student_p_holm), _p(r.welch_p_holm), _p(r.paired_p_holm), r.note or ""]
            for r in stats.itertuples()]
    return [f"## Statistics: every arm vs {method_label(baseline)} ({metric.replace('_', ' ')})", "",
            f"Two-sided t-tests of each arm against {method_label(baseline)} over the repeats: Student's (pooled "
            "variance, the paper's), Welch's (unequal variances) and the paired test (repeat r of both arms shares "
            f"its labelled subset and seed). Holm: adjusted over the grid's {len(stats)} comparisons (every arm × "
            "dataset × fraction), per test; a test undefined for a row (n/a, see its note) is left out of its family. "
            "Δ: difference of means in points; n: arm / baseline / pairs.", "",
            *_table(["Dataset", "Labelled (%)", "Method", "Δ (points)", "n", "Student p", "Welch p", "paired p",
                     "Holm Student", "Holm Welch", "Holm paired", "note"], rows)]


def _margin_rows(check: pd.DataFrame, results: pd.DataFrame, with_method: bool) -> list[list[str]]:
    return [[dataset_title(results, r.dataset), *([method_label(r.method)] if with_method else []),
             f"{100 * r.label_fraction:g}", f"{100 * r.finetuned_mean:.1f}", f"{100 * r.probe_mean:.1f}", r.margins,
             f"{100 * r.mean_margin:+.1f}", str(r.n_below), "yes" if r.passes else "**no**"] for r in check.itertuples()]


_BIAS = ("`best_val_accuracy` is the best of the fine-tuning's validation passes (its checkpoint was chosen on "
         "them), and repeat 0 is the recipe-selection run of the recipe chosen, the best of several on the same "
         "split; the probe's is one fit scored once: the comparison leans towards the fine-tuned model, so a "
         "failure is conclusive and a narrow pass is not.")
_MISSING = "These results have no validation probe (`val_linear_probe_accuracy`, an earlier grid): rerun the grid to check."


def baseline_check_lines(results: pd.DataFrame, baseline: str = "random") -> list[str]:
    """Markdown: the fair-baseline check on validation, per dataset × fraction, with per-repeat margins.

    If the probe on frozen random features beats the fine-tuned ``baseline``, its fine-tuning is broken
    (under-trained), not SSL good: said in bold before the table.
    """
    if baseline not in set(results["method"]):
        return []
    title = [f"## Fair-baseline check: fine-tuned {method_label(baseline)} vs a linear probe on frozen random features",
             ""]
    if not _has(results[results["method"] == baseline], PROBE_VAL) or FINETUNED_VAL not in results.columns:
        return title + [_MISSING, ""]
    check = own_probe_check(results, FINETUNED_VAL, PROBE_VAL, methods=[baseline])
    failed = check[~check["passes"].astype(bool)]
    where = "; ".join(f"{dataset_title(results, d)} at {', '.join(f'{100 * f:g}' for f in block['label_fraction'])} %"
                      for d, block in failed.groupby("dataset", sort=False))
    loud = ([f"> **The fair baseline is broken** ({where} labelled): the fine-tuned baseline does not beat a probe "
             "on its own random features on validation. Gains over it there are not evidence for SSL: fix its "
             "fine-tuning (recipes, step budget) first.", ""]
            if len(failed) else [])
    return title + loud + [
        "Validation accuracy (%) over the repeats (the test split is not read); margins: fine-tuned − probe per "
        "repeat, in points; below: repeats where the probe wins; passes: mean margin ≥ 0. " + _BIAS, "",
        *_table(["Dataset", "Labelled (%)", f"{method_label(baseline)}, fine-tuned (val)", "Random features, probe (val)",
                 "margins per repeat", "mean margin", "below", "fine-tuned beats probe"],
                _margin_rows(check, results, with_method=False))]


def own_probe_lines(results: pd.DataFrame) -> list[str]:
    """Markdown: every arm's fine-tuned model vs the linear probe on its own frozen features, on validation."""
    title = ["## Fine-tuned vs its own frozen-feature probe (validation)", ""]
    if not _has(results, PROBE_VAL) or FINETUNED_VAL not in results.columns:
        return title + [_MISSING, ""] if _has(results, "linear_probe_accuracy") else []
    check = own_probe_check(results, FINETUNED_VAL, PROBE_VAL)  # by dataset, method (random first), fraction
    failed = check[~check["passes"].astype(bool)]
    summary = (f"**{len(failed)} of {len(check)} arm × fraction cells fail**: there fine-tuning loses what the frozen "
               "features give (deploy the probe, or keep the features: lower encoder rate, layer decay, LP-FT)."
               if len(failed) else f"All {len(check)} arm × fraction cells pass.")
    return title + [
        "Issue 26: every arm's fine-tuned model should beat a linear probe on its own frozen features (same "
        "labelled rows), on validation. Margins: fine-tuned − probe per repeat, in points; below: repeats where "
        "the probe wins; passes: mean margin ≥ 0. " + _BIAS, "", summary, "",
        *_table(["Dataset", "Method", "Labelled (%)", "fine-tuned (val)", "own probe (val)", "margins per repeat",
                 "mean margin", "below", "passes"], _margin_rows(check, results, with_method=True))]


def deployed_lines(results: pd.DataFrame, baseline: str = "random") -> list[str]:
    """Markdown: each arm's deployed classifier, its test accuracy (mean ± std in %) and the probe's share."""
    if not _has(results, "deployed_test_accuracy") or "deployed" not in results.columns:
        return []
    df = results[np.isfinite(pd.to_numeric(results["deployed_test_accuracy"], errors="coerce"))]
    methods = order_methods(df["method"], baseline)
    rows = []
    for dataset in order_datasets(df):
        for fraction, block in df[df["dataset"] == dataset].groupby("label_fraction"):
            cells = [dataset_title(results, dataset), f"{100 * fraction:g}"]
            for m in methods:
                arm = block[block["method"] == m]
                acc = arm["deployed_test_accuracy"].astype(float)
                std = f"{100 * acc.std():.1f}" if len(acc) > 1 else "–"
                cells.append(f"{100 * acc.mean():.1f} ± {std} (probe {int((arm['deployed'] == 'probe').sum())}/{len(arm)})"
                             if len(arm) else "–")
            rows.append(cells)
    return ["## Deployed classifier: the better of probe and fine-tune, chosen on validation", "",
            "Per cell, what a user would ship: the linear probe on frozen features if its validation accuracy is "
            "above the fine-tuned model's best validation accuracy, else the fine-tuned model (ties: fine-tuned). "
            "Test accuracy (%) of the chosen one, mean ± sample std over the repeats; (probe k/n): repeats where "
            "the probe was chosen.", "",
            *_table(["Dataset", "Labelled (%)", *[method_label(m) for m in methods]], rows)]


def edge_lines(results: pd.DataFrame, recipes: Mapping[str, Mapping[str, Any]] | None,
               extended: pd.DataFrame | None = None) -> list[str]:
    """Markdown: the recipes the grid added at the edge of the space (``extended``, one row per
    :class:`~cryomonai.experiment.edges.Extension`), then the arms whose chosen recipe still sets ``lr`` or
    ``encoder_lr`` at the edge of the recipes they chose from."""
    extended = extended if extended is not None and len(extended) else None
    lines, spaces = [], None
    if extended is not None:
        added = set(extended["recipe"])
        declared = [name for name in recipes or {} if name not in added]
        spaces = {(d, m): declared + list(dict.fromkeys(block["recipe"]))
                  for (d, m), block in extended.groupby(["dataset", "method"], sort=False)}
        rows = [[r.dataset, method_label(r.method), f"`{r.parent}`", f"`{r.key}`", r.edge, f"{r.from_value:g} → {r.value:g}",
                 f"`{r.recipe}`", str(r.step), ", ".join(f"{100 * f:g}" for f in r.fractions)] for r in extended.itertuples()]
        lines = ["**Extended on validation** (`extend_edges`; `recipes_extended.json`). Where an arm's choice put a "
                 "rate at the edge of the space, the grid added the chosen recipe with that rate moved a factor "
                 "further, trained it at the selection fractions concerned (repeat 0) and chose again; step: factors "
                 "beyond the declared space.", "",
                 *_table(["Dataset", "Method", "from recipe", "key", "edge", "value", "added recipe", "step",
                          "at labelled (%)"], rows)]
    edges = recipe_edges(results, recipes or {}, spaces=spaces)
    if edges.empty:
        return lines + (["Every extended arm's final choice is inside its extended space.", ""] if lines else [])

    def still(r: Any) -> str:
        keys = [r.key, "lr"] if r.key == "encoder_lr" else [r.key]  # an encoder rate that follows lr moved with it
        went = extended is not None and ((extended["dataset"] == r.dataset) & (extended["method"] == r.method)
                                         & extended["key"].isin(keys) & (extended["edge"] == r.edge)).any()
        return f"{r.edge}: extension stopped after max_steps" if went else r.edge

    rows = [[r.dataset, method_label(r.method), f"`{r.recipe}`", f"`{r.key}`", f"{r.value:g}", still(r)]
            for r in edges.itertuples()]
    return lines + [
        "**At the edge: widen the space.** These arms chose a recipe whose rate is the largest or the smallest "
        "on offer among the recipes that vary it, so a better one may lie outside the space (extend it and "
        "choose again, on validation).", "",
        *_table(["Dataset", "Method", "Recipe", "key", "value", "edge of the space"], rows)]
