"""Grid presets: what a grid runs (datasets × methods × label fractions × repeats, recipes), read
from the bundle's ``configs/grid/<name>.json`` or a JSON file, checked on load.

A preset may inherit: ``"base": "cpu"`` (a preset name, or a JSON path relative to this file) is that
preset with this file's keys merged over it as a JSON merge patch (RFC 7396): a dict merges key by
key, recursively; a list or any other value replaces; ``null`` removes the key (its default applies).
So an overlay holds only what differs, as the bundle's config overlays do.

Example:
    >>> merge({"pretrain": {"epochs": 30, "lr": 0.001}, "workers": 2, "recipes": {"a": {}}},
    ...       {"pretrain": {"epochs": 50}, "workers": None, "recipes": None})
    {'pretrain': {'epochs': 50, 'lr': 0.001}}
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryomonai.errors import ConfigError
from cryomonai.experiment.executors import ExecutorSpec
from cryomonai.experiment.layout import GridLayout
from cryomonai.pipeline import bundle_dir

__all__ = ["DEFAULT_RECIPE", "TABLE_KEYS", "GridCell", "GridPreset", "grid_cells", "load_preset", "merge", "preset_dir", "preset_spec"]

#: the keys of a dataset entry that names a particle table (the others simulate)
TABLE_KEYS = {"name", "table", "split_fractions", "working_box", "working_voxel_size"}
#: the recipe name of a preset without a ``recipes`` search space (its ``finetune`` overrides alone)
DEFAULT_RECIPE = "default"


@dataclass
class GridPreset:
    """What a grid runs (a JSON file in the bundle's ``configs/grid/``; see :func:`load_preset`).

    Attributes:
        name: preset name.
        datasets: one dict per dataset, either simulated — ``name``, ``snr`` (number or ``"inf"``) and
            any other :func:`~cryomonai.simulate.dataset.simulate_dataset` argument (``n_per_class``,
            ``box``, ``binning``, ``max_shift``, ``n_neighbours``, ``seed``, ``classes``) — or a
            user's labelled particles: ``name``, ``table`` (STAR/CSV path) and optionally
            ``split_fractions`` ([train, val, test], for a table without a split column),
            ``working_box`` and ``working_voxel_size`` (Å).
        methods: ``"random"`` (random init, the baseline) and SSL method names (bundle overlays).
        label_fractions: fractions of the training labels (the paper: 0.25, 0.5, 0.75, 1.0).
        repeats: repeats per cell (the paper: 5), seeds ``seed + repeat``.
        seed: base seed.
        encoder: encoder name (bundle overlay).
        common: bundle overrides for every run (``batch_size``, ``num_workers``, ``progress`` ...).
        pretrain: bundle overrides for pretraining (``epochs``, ``lr`` ...).
        pretrain_by_method: per-method pretraining overrides, applied after ``pretrain``.
        finetune: bundle overrides for fine-tuning (``epochs``, ``lr`` ...), shared by every recipe.
        recipes: the fine-tuning search space: recipe name → bundle overrides applied after
            ``finetune`` (e.g. ``{"adam_1e-3": {"lr": 0.001}, "adam_split": {"encoder_lr": 1e-4}}``);
            each arm gets the recipe with the best validation accuracy. Empty: one recipe,
            ``"default"`` = ``finetune`` alone.
        selection_fractions: the label fractions at which the recipes are compared (repeat 0);
            ``None``: all of ``label_fractions``.
        choose_per_fraction: ``False`` (default): an arm's one recipe is the best on the mean validation
            accuracy over the selection fractions, for every label fraction. ``True``: each selection
            fraction gets the recipe best on validation *at that fraction* (others keep the mean's
            winner), so a recipe that keeps pretrained features at 1 % labels and one that trains
            freely at 100 % can both be chosen.
        extend_edges: ``None`` (default): the recipe space is as declared. ``{"factor": 3, "max_steps": 2}``:
            where an arm's choice (per selection fraction with ``choose_per_fraction``) puts ``lr`` or
            ``encoder_lr`` at the largest or smallest value on offer, the grid adds that recipe with the
            rate × or ÷ ``factor``, trains it at those fractions (repeat 0, validation only) and chooses
            again, at most ``max_steps`` factors beyond the declared space per key and direction
            (:mod:`~cryomonai.experiment.edges`; recorded in ``recipes_extended.json``).
        readouts: also compute linear-probe and kNN accuracy on frozen features.
        report: arguments of the report (``gradcam_examples``, ``embedding``).
        executor: who trains the runs (:class:`~cryomonai.experiment.executors.ExecutorSpec`):
            ``{"kind": "local"}`` (this machine, the default), ``{"kind": "slurm", "partition": …,
            "gpus_per_job": 1, "time_min": 240, …}`` (one SLURM job per run) or ``{"kind": "debug"}``.
        workers: training processes at once (:mod:`~cryomonai.experiment.scheduler`; 1: every run in
            this process, one after another). With more, the CPU's threads are shared out among them,
            which changes floating-point results within their noise, not what the grid computes.
    """

    name: str
    datasets: list[dict[str, Any]]
    methods: list[str]
    label_fractions: list[float] = field(default_factory=lambda: [0.25, 0.5, 0.75, 1.0])
    repeats: int = 5
    seed: int = 0
    encoder: str = "rb3d"
    common: dict[str, Any] = field(default_factory=dict)
    pretrain: dict[str, Any] = field(default_factory=dict)
    pretrain_by_method: dict[str, dict[str, Any]] = field(default_factory=dict)
    finetune: dict[str, Any] = field(default_factory=dict)
    recipes: dict[str, dict[str, Any]] = field(default_factory=dict)
    selection_fractions: list[float] | None = None
    choose_per_fraction: bool = False
    extend_edges: dict[str, Any] | None = None
    readouts: bool = True
    report: dict[str, Any] = field(default_factory=dict)
    workers: int = 1
    executor: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        def key(name: str) -> str:
            return f"grid preset {self.name!r}, key {name!r}"

        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 1:
            raise ConfigError(key("workers"), f"workers={self.workers!r}", "give a whole number >= 1 (1: one run at a time)")
        try:
            ExecutorSpec.from_dict(self.executor)  # a one-line error for a bad section
        except ConfigError as err:
            raise ConfigError(err.where.replace("grid preset", f"grid preset {self.name!r}", 1), err.problem, err.fix) from None
        if not self.datasets or not self.methods:
            raise ConfigError(f"grid preset {self.name!r}, keys 'datasets' and 'methods'",
                              "needs at least one dataset and one method", "list them in the preset JSON")
        names = [d.get("name") for d in self.datasets]
        if None in names or len(set(names)) != len(names):
            raise ConfigError(key("datasets"), f"dataset names {names} are missing or repeated",
                              "give every dataset a unique 'name'")
        for ds in self.datasets:
            _check_dataset_entry(ds, key("datasets"))
        bad = [f for f in self.label_fractions if not 0 < float(f) <= 1]
        if bad:
            raise ConfigError(key("label_fractions"), f"label fractions {bad} are outside (0, 1]",
                              "use e.g. [0.25, 0.5, 0.75, 1.0]")
        if int(self.repeats) < 1:
            raise ConfigError(key("repeats"), f"repeats={self.repeats}", "use at least 1 (the paper: 5)")
        bad = [r for r in self.recipes if not r or not str(r).replace("_", "").replace("-", "").replace(".", "").isalnum()]
        if bad:
            raise ConfigError(key("recipes"), f"recipe names {bad} are not plain names", "use letters, digits, '_', '-', '.'")
        if not isinstance(self.choose_per_fraction, bool):
            raise ConfigError(key("choose_per_fraction"), f"choose_per_fraction={self.choose_per_fraction!r}",
                              "give true or false")
        _check_extend_edges(self.extend_edges, key("extend_edges"))
        extra = sorted(set(map(float, self.selection_fractions or [])) - set(map(float, self.label_fractions)))
        if extra:
            raise ConfigError(key("selection_fractions"), f"selection_fractions {extra} are not label fractions",
                              f"choose among {self.label_fractions}")

    def recipe_overrides(self) -> dict[str, dict[str, Any]]:
        """Every recipe's full fine-tuning overrides (``finetune`` then the recipe's), in declared order."""
        recipes = self.recipes or {DEFAULT_RECIPE: {}}
        return {name: {**copy.deepcopy(self.finetune), **copy.deepcopy(extra)} for name, extra in recipes.items()}

    def selection_cells(self) -> list[float]:
        """The label fractions at which recipes are compared."""
        return [float(f) for f in (self.selection_fractions or self.label_fractions)]


@dataclass(frozen=True)
class GridCell:
    """One fine-tuning run of the grid."""

    dataset: str
    method: str
    label_fraction: float
    repeat: int

    def run_dir(self, recipe: str) -> str:
        """The cell's folder (fine-tuned with ``recipe``) relative to the grid's ``out_dir``."""
        return GridLayout.cell_dir(self.dataset, self.method, recipe, self.label_fraction, self.repeat)


def _check_extend_edges(spec: Any, where: str) -> None:
    """``extend_edges`` is off (``None``) or ``{"factor": > 1, "max_steps": whole number >= 1}`` (one-line errors)."""
    if spec is None:
        return
    fix = 'give e.g. {"factor": 3, "max_steps": 2}, or null (off)'
    if not isinstance(spec, dict) or set(spec) != {"factor", "max_steps"}:
        raise ConfigError(where, f"extend_edges={spec!r} is not a dict with keys factor and max_steps", fix)
    factor, steps = spec["factor"], spec["max_steps"]
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not factor > 1:
        raise ConfigError(where, f"factor={factor!r} is not a number > 1", fix)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ConfigError(where, f"max_steps={steps!r} is not a whole number >= 1", fix)


def _check_dataset_entry(ds: dict[str, Any], where: str) -> None:
    """A table entry has a table and no simulation keys (one-line errors naming the entry)."""
    if "table" not in ds:
        return
    entry = f"{where}, dataset {ds['name']!r}"
    extra = sorted(set(ds) - TABLE_KEYS)
    if extra:
        raise ConfigError(entry, f"names a table and also simulation keys {extra}",
                          f"remove {extra} (a table is read as it is), or remove 'table' to simulate")
    if not ds["table"]:
        raise ConfigError(entry, "has no table", "give --dataset_table PATH (or 'table' in the preset)")


def preset_dir() -> Path:
    """The bundle's folder of grid presets (``configs/grid``)."""
    return bundle_dir() / "configs" / "grid"


def merge(base: Any, patch: Any) -> Any:
    """``patch`` over ``base`` as a JSON merge patch (RFC 7396): dicts merge recursively, ``None`` removes
    a key, anything else (a list, a number …) replaces. Neither argument is changed."""
    if not isinstance(patch, dict) or not isinstance(base, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge(out.get(key), value)
    return out


def _find(preset: str | os.PathLike, relative_to: Path | None = None) -> Path:
    """A preset's file: a name in the bundle's ``configs/grid/``, or a JSON path (relative to ``relative_to``)."""
    path = Path(preset)
    if not path.suffix:
        return preset_dir() / f"{preset}.json"
    return (relative_to / path).resolve() if relative_to is not None else path


def _read(path: Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The preset at ``path`` with its ``base`` chain merged in (``chain``: the files that inherit from it)."""
    if path.resolve() in chain:
        names = " -> ".join(p.name for p in (*chain, path.resolve()))
        raise ConfigError(f"{chain[-1]}, key 'base'", f"the presets inherit in a cycle ({names})",
                          "let one preset of the cycle stand alone (remove its 'base')")
    try:
        spec = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ConfigError(path, f"not valid JSON ({err})", "fix the preset file") from None
    for ds in spec.get("datasets") or []:
        if isinstance(ds, dict) and ds.get("table"):  # relative to the file that names it
            ds["table"] = str((path.parent / Path(ds["table"]).expanduser()).resolve())
    base = spec.pop("base", None)
    if base is None:
        return spec
    parent = _find(base, path.parent)
    if not parent.is_file():
        found = sorted(p.stem for p in preset_dir().glob("*.json"))
        raise ConfigError(f"{path}, key 'base'", f"base preset {base!r} not found",
                          f"use one of {found} or a JSON path relative to {path.name}")
    inherited = _read(parent, (*chain, path.resolve()))
    inherited.pop("name", None)  # a preset's name is its own
    return merge(inherited, spec)


def preset_spec(preset: str | os.PathLike) -> dict[str, Any]:
    """A preset's JSON with its ``base`` chain merged in, unchecked (what :func:`load_preset` reads)."""
    return _read(_find(preset))


def load_preset(preset: str | os.PathLike, dataset_table: str | os.PathLike | None = None, **overrides: Any) -> GridPreset:
    """A preset by name (``"cpu"``, ``"paper"``, ``"real"``: ``configs/grid/<name>.json``) or JSON path.

    A ``base`` key inherits (see the module docstring). ``overrides`` replace top-level keys (e.g.
    ``repeats=1``). ``dataset_table`` (a path relative to the working directory) becomes the
    ``table`` of the preset's one table dataset (e.g. the ``real`` preset's). A ``table`` written in
    a preset is relative to that preset's file.
    """
    path = _find(preset)
    if not path.is_file():
        found = sorted(p.stem for p in preset_dir().glob("*.json"))
        raise ConfigError(f"{path} (--preset)", "grid preset not found", f"use one of {found} or a JSON file path")
    spec = _read(path)
    spec.update(overrides)
    spec.setdefault("name", path.stem)
    unknown = set(spec) - set(GridPreset.__dataclass_fields__) - {"description"}
    if unknown:
        raise ConfigError(path, f"unknown preset keys {sorted(unknown)}", f"use {sorted(GridPreset.__dataclass_fields__)}")
    spec.pop("description", None)
    datasets = [dict(d) for d in spec.get("datasets", [])]
    for ds in datasets:
        if ds.get("table"):
            ds["table"] = str((path.parent / Path(ds["table"]).expanduser()).resolve())
    if dataset_table is not None:
        tables = [ds for ds in datasets if "table" in ds]
        if len(tables) != 1:
            raise ConfigError(f"{path}, key 'datasets' (--dataset_table)",
                              f"--dataset_table needs a preset with one table dataset, it has {len(tables)}",
                              "use --preset real, or a preset with one dataset entry that has 'table'")
        tables[0]["table"] = str(Path(dataset_table).expanduser().resolve())
    spec["datasets"] = datasets
    try:
        return GridPreset(**spec)
    except ConfigError as err:  # the file, not only the preset's name
        raise ConfigError(err.where.replace(f"grid preset {spec['name']!r}", str(path), 1), err.problem, err.fix) from None


def grid_cells(preset: GridPreset) -> Iterator[GridCell]:
    """Every cell, dataset by dataset, then repeat, fraction and method (so a stopped grid has
    complete repeats of the first datasets)."""
    for ds in preset.datasets:
        for repeat in range(int(preset.repeats)):
            for frac in preset.label_fractions:
                for method in preset.methods:
                    yield GridCell(ds["name"], method, float(frac), repeat)
