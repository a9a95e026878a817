"""Extending the recipe space on validation where an arm's choice sits at its edge (the preset's ``extend_edges``).

"The recipe space must not put the winner at its edge: if the best rate is the largest on offer, extend
the space on validation and record it." With ``"extend_edges": {"factor": 3, "max_steps": 2}``, when an
arm's chosen recipe (each selection fraction's with ``choose_per_fraction``, else its one choice) puts a
rate (:data:`~cryomonai.experiment.checks.EDGE_KEYS`: ``lr``, ``encoder_lr``) at the largest or the
smallest value on offer among the recipes it chose from — the edge of
:func:`~cryomonai.experiment.checks.recipe_edges`, for a key with at least two values on offer — the grid
adds a recipe: the chosen one's overrides with that rate × (largest) or ÷ (smallest) ``factor``, named
after its declared root recipe and the rates it changed (``adam_3e-3`` → ``adam_3e-3_lr_0.009``). It is
trained as selection runs (repeat 0, the test split unread) at the fractions concerned, and the arm
chooses again. A recipe already ``max_steps`` factors beyond the declared space in that key and direction
is not extended: the report says the extension stopped there. A recipe that does not set
``encoder_lr`` has its ``lr`` there (finetune.json's ``"@lr"``): that rate moves with ``lr``, not on its own.

Each extension is written to the grid's ``recipes_extended.json``
(:class:`~cryomonai.experiment.layout.GridLayout`) *before* it trains, so a resumed grid chooses from
the same recipes, and a run in a worker process or a SLURM job finds its overrides there
(:func:`recipe_overrides`), whatever preset object it was handed.

Example (the largest rate wins; ×3):
    >>> table = pd.DataFrame({"recipe": ["lo", "hi"], "label_fraction": [1.0, 1.0]})
    >>> [e.recipe for e in propose(table, [((1.0,), "hi", ["lo", "hi"])], {"lo": {"lr": 1e-4}, "hi": {"lr": 1e-3}},
    ...                            {}, [], factor=3, max_steps=1, arm=("d", "random"))]
    ['hi_lr_0.003']
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from cryomonai.experiment.checks import BUNDLE_RATES, EDGE_KEYS, recipe_rates
from cryomonai.experiment.preset import GridPreset
from cryomonai.io.atomic import atomic_write

__all__ = ["Extension", "arm_runs", "extensions_table", "propose", "read_extensions", "recipe_overrides",
           "write_extensions"]

#: one choice an arm made: (the selection fractions it holds for, the winner, the recipes it chose from)
Choice = tuple[tuple[float, ...], str, Sequence[str]]


@dataclass(frozen=True)
class Extension:
    """A recipe the grid added for one arm because its choice sat at the edge of the space.

    Attributes:
        dataset / method: the arm.
        recipe: the new recipe's name.
        parent: the chosen recipe it extends.
        key / edge: the rate moved (``lr``, ``encoder_lr``) and the edge it was at (``largest``, ``smallest``).
        from_value / value: the rate before and after (× or ÷ the factor).
        step: factors beyond the declared space in that key and direction (1, 2 … ``max_steps``).
        fractions: the selection fractions (rounded to 6 digits) it is trained and compared at.
        overrides: its bundle overrides over the preset's ``finetune`` (as a declared recipe's).
    """

    dataset: str
    method: str
    recipe: str
    parent: str
    key: str
    edge: str
    from_value: float
    value: float
    step: int
    fractions: tuple[float, ...]
    overrides: dict[str, Any] = field(hash=False)


def read_extensions(path: str | os.PathLike) -> list[Extension]:
    """The extensions recorded at ``path`` (``recipes_extended.json``), in the order they were made; none if absent."""
    path = Path(path)
    if not path.is_file():
        return []
    return [Extension(**{**e, "fractions": tuple(e["fractions"])}) for e in json.loads(path.read_text())["extensions"]]


def write_extensions(path: str | os.PathLike, extensions: Sequence[Extension]) -> None:
    """Write ``extensions`` to ``path`` atomically (the whole record)."""
    text = json.dumps({"extensions": [asdict(e) for e in extensions]}, indent=2) + "\n"
    with atomic_write(path, "w") as fh:
        fh.write(text)


def extensions_table(path: str | os.PathLike) -> pd.DataFrame:
    """The record at ``path`` as a table (one row per extension; empty if none), for the report."""
    columns = list(Extension.__dataclass_fields__)
    return pd.DataFrame([asdict(e) for e in read_extensions(path)], columns=columns)


def recipe_overrides(preset: GridPreset, record: str | os.PathLike | None = None) -> dict[str, dict[str, Any]]:
    """Every recipe's full fine-tuning overrides: the preset's (:meth:`GridPreset.recipe_overrides`), then the
    recipes recorded at ``record`` (``finetune`` then the extension's own)."""
    recipes = preset.recipe_overrides()
    for ext in read_extensions(record) if record is not None and preset.extend_edges else []:
        recipes.setdefault(ext.recipe, {**preset.finetune, **ext.overrides})
    return recipes


def arm_runs(preset: GridPreset, extensions: Sequence[Extension], dataset: str, method: str) -> list[tuple[str, float]]:
    """The selection runs of one arm as (recipe, fraction): every declared recipe at every selection fraction
    (none with one recipe), then the arm's extensions at their fractions."""
    recipes = list(preset.recipe_overrides())
    runs = [(r, float(f)) for r in (recipes if len(recipes) > 1 else []) for f in preset.selection_cells()]
    mine = [(e.recipe, float(f)) for e in extensions if (e.dataset, e.method) == (dataset, method) for f in e.fractions]
    return list(dict.fromkeys(runs + mine))


def _steps(recipe: str, key: str, edge: str, made: Mapping[str, Extension]) -> int:
    """How many factors ``recipe`` lies beyond the declared space in ``key`` towards ``edge`` (its ancestry)."""
    steps = 0
    while recipe in made:
        ext = made[recipe]
        steps += (ext.key, ext.edge) == (key, edge)
        recipe = ext.parent
    return steps


def _edge(rates: Mapping[str, Mapping[str, float]], winner: str, key: str) -> str:
    """``"largest"`` or ``"smallest"`` where ``winner``'s ``key`` is at that edge of ``rates`` (≥ 2 values on offer), else ``""``."""
    offered = sorted({v[key] for v in rates.values() if math.isfinite(v.get(key, math.nan))})
    value = rates[winner].get(key, math.nan)
    if len(offered) < 2 or not math.isfinite(value):
        return ""
    return "largest" if value == offered[-1] else "smallest" if value == offered[0] else ""


def _root(recipe: str, made: Mapping[str, Extension]) -> str:
    while recipe in made:
        recipe = made[recipe].parent
    return recipe


def _name(root: str, overrides: Mapping[str, Any], root_overrides: Mapping[str, Any]) -> str:
    """``root`` and each rate changed from it: ``adam_3e-3_lr_0.009`` (letters, digits, ``_ - .`` only)."""
    changed = [k for k in EDGE_KEYS if k in overrides and overrides[k] != root_overrides.get(k)]
    return root + "".join(f"_{k}_{float(overrides[k]):g}".replace("+", "") for k in changed)


def propose(table: pd.DataFrame, choices: Sequence[Choice], recipes: Mapping[str, Mapping[str, Any]],
            finetune: Mapping[str, Any], extensions: Sequence[Extension], factor: float, max_steps: int,
            arm: tuple[str, str]) -> list[Extension]:
    """The recipes to add for ``arm`` after it chose ``choices`` (none: its choice is final).

    Args:
        table: the arm's selection runs so far (``recipe``, ``label_fraction`` rounded to 6 digits).
        choices: each choice as (its selection fractions, the winner, the recipes it chose from).
        recipes: every recipe's own overrides over ``finetune`` (the declared ones and every extension's).
        finetune: the preset's ``finetune`` overrides (a recipe's rates are read over them).
        extensions: the extensions made so far for ``arm``.
        factor / max_steps: the preset's ``extend_edges``.
        arm: (dataset, method).

    Returns:
        one :class:`Extension` per new recipe (a recipe proposed at several fractions once, with them
        all), trained nowhere yet at its ``fractions``.
    """
    made = {e.recipe: e for e in extensions}
    tried = {(str(r.recipe), round(float(r.label_fraction), 6)) for r in table.itertuples()}
    tried |= {(e.recipe, round(f, 6)) for e in extensions for f in e.fractions}  # recorded, perhaps not yet scored
    new: dict[str, Extension] = {}
    for fractions, winner, candidates in choices:
        rates = {r: recipe_rates({**finetune, **recipes[r]}, BUNDLE_RATES) for r in candidates}
        edges = {key: _edge(rates, winner, key) for key in EDGE_KEYS}
        if "encoder_lr" not in {**finetune, **recipes[winner]} and edges["encoder_lr"] == edges["lr"]:
            edges["encoder_lr"] = ""  # it follows lr (finetune.json's "@lr"): it moves with lr, not on its own
        for key, edge in edges.items():
            value = rates[winner][key]
            step = _steps(winner, key, edge, made)
            if not edge or step >= max_steps:
                continue
            moved = float(f"{(value * factor if edge == 'largest' else value / factor):.6g}")
            overrides = {**recipes[winner], key: moved}
            root = _root(winner, made)
            name = _name(root, overrides, recipes[root])
            while name in recipes and dict(recipes[name]) != overrides:  # a declared recipe of that name
                name += "_x"
            todo = tuple(f for f in fractions if (name, round(f, 6)) not in tried)
            if not todo:
                continue
            if name in new:
                todo = tuple(sorted({*new[name].fractions, *todo}))
            new[name] = Extension(arm[0], arm[1], name, winner, key, edge, value, moved, step + 1, todo, overrides)
    return list(new.values())
