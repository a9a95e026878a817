"""The grid's per-cell choices and its checks of the protocol, as tables (the report's Markdown is in
:mod:`~cryomonai.experiment.report_checks`).

* :func:`deployed` — a cell's *deployed* classifier (issue 26): the better of its linear probe and its
  fine-tuned model, chosen on **validation** (ties: the fine-tuned model), with the chosen one's test
  accuracy;
* :func:`recipe_edges` — the arms whose chosen recipe sets a rate (``lr``, ``encoder_lr``) at the edge of
  the recipe search space: the largest or the smallest on offer among the recipes that vary that key.

Example:
    >>> deployed({"best_val_accuracy": 0.40, "val_linear_probe_accuracy": 0.45,
    ...           "test_accuracy": 0.38, "linear_probe_accuracy": 0.44})
    {'deployed': 'probe', 'deployed_test_accuracy': 0.44}
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

__all__ = ["BUNDLE_RATES", "EDGE_KEYS", "deployed", "recipe_edges", "recipe_rates"]

#: the rate keys whose chosen value is checked against the edges of the recipe space
EDGE_KEYS: tuple[str, ...] = ("lr", "encoder_lr")


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def deployed(row: Mapping[str, Any]) -> dict[str, Any]:
    """A cell's deployed classifier: ``"probe"`` if its validation probe accuracy
    (``val_linear_probe_accuracy``) is above the fine-tuned model's (``best_val_accuracy``), else
    ``"finetune"`` (ties, or no probe); ``deployed_test_accuracy`` is the chosen one's test accuracy
    (``linear_probe_accuracy`` or ``test_accuracy``). The test split is not read to choose.
    """
    probe_val = _number(row.get("val_linear_probe_accuracy"))
    probe_wins = math.isfinite(probe_val) and probe_val > _number(row.get("best_val_accuracy"))
    if probe_wins:
        return {"deployed": "probe", "deployed_test_accuracy": _number(row.get("linear_probe_accuracy"))}
    return {"deployed": "finetune", "deployed_test_accuracy": _number(row.get("test_accuracy"))}


def recipe_rates(overrides: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, float]:
    """A recipe's rates: its ``lr`` (else the default), its ``encoder_lr`` (else its ``lr``, as finetune.json)."""
    rates = {**defaults, **overrides}
    rates.setdefault("encoder_lr", rates.get("lr"))
    return {k: _number(v) for k, v in rates.items()}


#: finetune.json's fine-tuning rate, for a recipe that does not set one
BUNDLE_RATES: dict[str, float] = {"lr": 0.0005}


def recipe_edges(results: pd.DataFrame, recipes: Mapping[str, Mapping[str, Any]],
                 defaults: Mapping[str, Any] | None = None, keys: tuple[str, ...] = EDGE_KEYS,
                 spaces: Mapping[tuple[str, str], Sequence[str]] | None = None) -> pd.DataFrame:
    """The arms whose chosen recipe puts a rate at the edge of the search space.

    For each key of ``keys`` that the recipes vary, an arm (dataset, method; its ``recipe`` in
    ``results``) is at the edge when its recipe's value is the largest or the smallest on offer (with two
    values on offer, every choice is: the space has no inside). A recipe without ``lr`` has
    ``defaults["lr"]``, one without ``encoder_lr`` its ``lr`` (finetune.json's ``"encoder_lr": "@lr"``);
    a value that is not a number (a ``$`` expression) is not compared.

    Args:
        results: rows with ``dataset``, ``method`` and ``recipe`` (``results.csv``).
        recipes: recipe name → bundle overrides (the preset's search space,
            :meth:`~cryomonai.experiment.preset.GridPreset.recipe_overrides`).
        defaults: rates a recipe leaves alone (default :data:`BUNDLE_RATES`).
        keys: the rate keys checked.
        spaces: (dataset, method) → the recipe names that arm chose from (the declared ones and those the
            grid added for it, :mod:`~cryomonai.experiment.edges`); an arm not in it: every recipe of ``recipes``.

    Returns:
        columns ``dataset, method, recipe, key, value, edge`` (``edge``: ``"largest"`` or ``"smallest"``),
        one row per arm and key at an edge; no rows with fewer than two recipes.
    """
    columns = ["dataset", "method", "recipe", "key", "value", "edge"]
    if len(recipes) < 2 or not {"dataset", "method", "recipe"} <= set(results.columns):
        return pd.DataFrame(columns=columns)
    rates = {name: recipe_rates(o, BUNDLE_RATES if defaults is None else defaults) for name, o in recipes.items()}

    def offer(names: Sequence[str]) -> dict[str, list[float]]:
        return {key: sorted({rates[n][key] for n in names if n in rates and math.isfinite(rates[n].get(key, math.nan))})
                for key in keys}

    rows = []
    for arm in results.drop_duplicates(["dataset", "method", "recipe"]).itertuples():
        offered = offer((spaces or {}).get((arm.dataset, arm.method), list(rates)))
        for key in (k for k in keys if len(offered[k]) >= 2):  # a key the recipes vary
            value = rates.get(str(arm.recipe), {}).get(key, math.nan)
            edge = "largest" if value == offered[key][-1] else "smallest" if value == offered[key][0] else ""
            if edge:
                rows.append([arm.dataset, arm.method, arm.recipe, key, value, edge])
    return pd.DataFrame(rows, columns=columns)
