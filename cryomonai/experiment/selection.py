"""An arm's fine-tuning recipe, chosen on the validation split (``selection.csv``), and the recipes the grid
adds where that choice sits at the edge of the space (:mod:`~cryomonai.experiment.edges`).

The scheduler trains the selection runs (repeat 0 at the selection fractions); :class:`RecipeChooser`
scores them on validation, chooses, and — with the preset's ``extend_edges`` — says which selection runs
to train next before the choice is final. The test split is never read here.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import pandas as pd

from cryomonai.experiment.edges import Choice, Extension, arm_runs, propose, read_extensions, write_extensions
from cryomonai.experiment.edges import recipe_overrides as all_recipes
from cryomonai.experiment.layout import GridLayout
from cryomonai.experiment.preset import GridCell, GridPreset
from cryomonai.experiment.tables import GridTables

__all__ = ["RecipeChooser"]

log = logging.getLogger(__name__)


class RecipeChooser:
    """The recipe choice of every arm of ``preset``'s grid at ``layout``.

    Args:
        preset: the grid's preset.
        tables: its tables (``selection.csv`` is written here, a row per selection run scored).
        layout: its folder (``recipes_extended.json``).
        validate: ``validate(cell, recipe)`` → the best validation accuracy of a trained run.
    """

    def __init__(self, preset: GridPreset, tables: GridTables, layout: GridLayout,
                 validate: Callable[[GridCell, str], float]) -> None:
        self.preset, self.tables, self.layout, self.validate = preset, tables, layout, validate
        self._choices: dict[tuple[str, str], list[Choice]] = {}

    def extensions(self) -> list[Extension]:
        """The recipes added so far (``recipes_extended.json``; none unless the preset has ``extend_edges``)."""
        return read_extensions(self.layout.recipes_extended) if self.preset.extend_edges else []

    def recipes(self) -> dict[str, dict[str, Any]]:
        """Every recipe's full overrides: the declared ones, then the recipes added."""
        return all_recipes(self.preset, self.layout.recipes_extended)

    def runs(self, dataset: str, method: str) -> list[tuple[str, float]]:
        """The arm's selection runs as (recipe, fraction): the declared recipes', then its added recipes'."""
        return arm_runs(self.preset, self.extensions(), dataset, method)

    def choose(self, dataset: str, method: str) -> dict[float, str]:
        """The recipe of ``method`` on ``dataset`` per label fraction (rounded to 6 digits): the only one,
        or the best on the validation split.

        Every recipe fine-tunes repeat 0 at each selection fraction (trained by the scheduler, scored
        here, rows in ``selection.csv``); the highest mean best-validation accuracy over the selection
        fractions wins, ties to the first declared (an added recipe competes once it is scored at every
        selection fraction). With the preset's ``choose_per_fraction``, each selection fraction takes its
        own winner (the highest best-validation accuracy there, among the recipes scored there).
        """
        recipes = list(self.preset.recipe_overrides())
        fractions = [round(float(f), 6) for f in self.preset.label_fractions]
        if len(recipes) == 1:
            return dict.fromkeys(fractions, recipes[0])
        seed, runs = self.preset.seed, self.runs(dataset, method)
        have = self.tables.tried(dataset, method)
        for recipe, frac in runs:
            if (recipe, round(frac, 6)) in have:
                continue
            cell = GridCell(dataset, method, frac, 0)
            log.info("[grid %s] recipe selection: %s recipe=%s", self.preset.name, cell, recipe)
            self.tables.add_selection({
                "dataset": dataset, "method": method, "recipe": recipe, "label_fraction": frac, "repeat": 0,
                "pretrain_seed": seed if method != "random" else math.nan,
                "best_val_accuracy": self.validate(cell, recipe), "chosen": False, "run_dir": cell.run_dir(recipe)})
        table = self.tables.selection()
        mine = table[(table["dataset"] == dataset) & (table["method"] == method)]
        mine = mine.assign(label_fraction=mine["label_fraction"].astype(float).round(6))
        recipes = list(dict.fromkeys(recipes + [r for r, _ in runs]))  # the declared first: ties go to them
        selection = sorted({round(f, 6) for f in self.preset.selection_cells()})
        scored = {(str(r.recipe), r.label_fraction) for r in mine.itertuples()}
        complete = [r for r in recipes if all((r, f) in scored for f in selection)]

        def best(rows: pd.DataFrame, among: list[str]) -> str:
            # rounded, so that equal accuracies tie exactly (0.155 + 0.29 ≠ 0.165 + 0.28 in floating point)
            means = rows.groupby("recipe", sort=False)["best_val_accuracy"].mean().round(9)
            return max(among, key=lambda r: (means.get(r, -1.0), -recipes.index(r)))

        overall = best(mine[mine["recipe"].isin(complete)], complete)
        choice = dict.fromkeys(fractions, overall)
        self._choices[(dataset, method)] = [(tuple(selection), overall, complete)]
        if self.preset.choose_per_fraction:
            per = [f for f in sorted(set(mine["label_fraction"])) if f in choice]
            choice.update({f: best(mine[mine["label_fraction"] == f], recipes) for f in per})
            self._choices[(dataset, method)] = [((f,), choice[f], [r for r in recipes if (r, f) in scored])
                                                for f in per if f in selection]
        self.tables.mark_chosen(dataset, method, choice)
        return choice

    def extend(self, dataset: str, method: str) -> list[tuple[GridCell, str]]:
        """After :meth:`choose`: the selection runs to train before the arm's choice is final (none: it is).

        With the preset's ``extend_edges``, a choice at the edge of the recipes it was made among gets a
        recipe beyond it (:func:`~cryomonai.experiment.edges.propose`), recorded before it trains.
        """
        rule, choices = self.preset.extend_edges, self._choices.get((dataset, method))
        if not rule or not choices:
            return []
        made = self.extensions()
        own = {**self.preset.recipes, **{e.recipe: e.overrides for e in made}}
        table = self.tables.selection()
        mine = table[(table["dataset"] == dataset) & (table["method"] == method)]
        new = propose(mine, choices, own, self.preset.finetune, [e for e in made if (e.dataset, e.method) == (dataset, method)],
                      float(rule["factor"]), int(rule["max_steps"]), (dataset, method))
        if not new:
            return []
        write_extensions(self.layout.recipes_extended, made + new)
        for e in new:
            log.info("[grid %s] %s %s: %s at the %s %s (%g): adding %s (%s %g) at fractions %s", self.preset.name,
                     dataset, method, e.parent, e.edge, e.key, e.from_value, e.recipe, e.key, e.value, list(e.fractions))
        exact = {round(f, 6): f for f in self.preset.selection_cells()}  # the graph knows a run by its cell
        return [(GridCell(dataset, method, exact.get(f, f), 0), e.recipe) for e in new for f in e.fractions]
