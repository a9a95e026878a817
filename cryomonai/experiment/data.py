"""A grid's data: each dataset simulated once, or a user's table checked and split (stratified) when it
has no split; then its volume cache. And the bundle keys that point a run at a dataset.

A dataset entry either simulates (``{"name", "snr", "n_per_class", "box", ...}``) or names an
existing particle table (``{"name", "table": "path/to/particles.star"}``, STAR or CSV, a path relative
to the preset file; the paper's Table 2 case): the table and its subtomograms are read in place, never
copied or modified. A table without a ``split`` column gets a stratified split (``split_fractions``,
default 60/20/20, seeded by the preset's seed) saved as ``data/<dataset>/particles.star`` (the user's
rows and columns plus ``split``; volume paths absolute) and reused on resume. ``working_box`` and
``working_voxel_size`` bring volumes of another size to the working one, once, into the cache.
A simulated entry with ``"context_control": true`` is simulated with ``context=True`` (each box also
without its target; :mod:`~cryomonai.experiment.context_control`).
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from pathlib import Path
from typing import Any, Callable

from cryomonai.data.splits import stratified_split
from cryomonai.errors import ConfigError, CryoDataError
from cryomonai.experiment.layout import GridLayout
from cryomonai.experiment.preset import GridPreset
from cryomonai.io.table import ParticleTable, read_particle_table, write_particle_table
from cryomonai.simulate.prepare import ensure_dataset

__all__ = ["GridData", "snr"]


def snr(ds: dict[str, Any]) -> float:
    """The dataset's SNR: inf by default for a simulation, unknown (NaN) for a user's table."""
    return float(ds.get("snr", math.nan if "table" in ds else math.inf))


def _simulation(ds: dict[str, Any], seed: int) -> dict[str, Any]:
    sim = {k: v for k, v in ds.items() if k not in ("name", "context_control")}
    if ds.get("context_control"):  # each box also without its target: the context control
        sim["context"] = True
    sim["snr"] = snr(ds)
    sim.setdefault("seed", seed)
    return sim


def _has_split(path: Path) -> bool:
    """Whether the particle table at ``path`` gives a split on some row (``split`` / ``cryoSplit``)."""
    return bool(read_particle_table(path, check_files=False).df["split"].notna().any())


def _usable(entry: str, table: ParticleTable) -> ParticleTable:
    """``table`` if a classifier can be trained, chosen and tested on it: 2 classes or more, and particles
    in each of train, val and test; else a one-line error."""
    classes = table.df["label"].dropna().unique()
    if len(classes) < 2:
        raise CryoDataError(entry, f"has labelled particles of {len(classes)} class{'' if len(classes) == 1 else 'es'}",
                            "a classifier needs particles of at least 2 classes")
    counts = table.df["split"].value_counts()
    empty = [s for s in ("train", "val", "test") if not counts.get(s, 0)]
    if empty:
        have = ", ".join(f"{s} {int(counts.get(s, 0))}" for s in ("train", "val", "test"))
        raise CryoDataError(entry, f"has no {' and no '.join(empty)} particles ({have})",
                            "give it more particles per class (the split is stratified per class, 60/20/20 by default), "
                            "or a split column with rows in train, val and test")
    return table


class GridData:
    """The datasets of ``preset`` in the grid at ``layout``."""

    def __init__(self, preset: GridPreset, layout: GridLayout, progress: bool = False) -> None:
        self.preset, self.layout, self.progress = preset, layout, progress
        self._prepared: set[str] = set()
        self._table_paths: dict[str, Path] = {}
        self._warned: set[str] = set()

    def entry(self, name: str) -> dict[str, Any]:
        """The preset's entry of dataset ``name``."""
        return next(d for d in self.preset.datasets if d["name"] == name)

    def table_path(self, dataset: str) -> Path:
        """The particle table the bundle runs of ``dataset`` read: the user's own if it has a split, else
        the grid's copy (and for a simulation, the simulated one)."""
        if dataset not in self._table_paths:
            ds = self.entry(dataset)
            if "table" in ds and Path(ds["table"]).is_file() and _has_split(Path(ds["table"])):
                self._table_paths[dataset] = Path(ds["table"])
            else:
                self._table_paths[dataset] = self.layout.particles(dataset)
        return self._table_paths[dataset]

    def bundle_keys(self, dataset: str, seed: int) -> dict[str, Any]:
        """The bundle overrides of a run on ``dataset`` with ``seed``: data, cache, progress and the preset's ``common``."""
        ds = self.entry(dataset)
        if "table" in ds:
            where = dict(dataset_table=str(self.table_path(dataset)), simulate=False, simulation={},
                         working_box=ds.get("working_box"), working_voxel_size=ds.get("working_voxel_size"))
        else:
            where = dict(simulation=_simulation(ds, self.preset.seed))
        return dict(
            dataset_dir=str(self.layout.data_dir(dataset)), cache_path=str(self.layout.cache(dataset)), seed=seed,
            progress=self.progress, **where, **copy.deepcopy(self.preset.common),
        )

    def prepare(self, dataset: str, timed: Callable[[str], bool], record: Callable[[str, float], None]) -> None:
        """Simulate ``dataset``, or check a user's table and split it if it has no split; then build the
        volume cache (at the working size). Done once: ``record(dataset, seconds)`` unless ``timed(dataset)``
        says it was recorded before; later calls only check."""
        ds = self.entry(dataset)
        if "table" in ds:
            self._check_fractions(dataset, self._split_table(ds))
        table, cache = self.table_path(dataset), self.layout.cache(dataset)
        if table.is_file() and cache.is_file() and dataset in self._prepared:
            return
        t0 = time.perf_counter()
        if "table" in ds:
            working = {"working_box": ds.get("working_box"), "working_voxel_size": ds.get("working_voxel_size")}
            try:
                ensure_dataset(table, str(cache), False, self.progress, **working)
            except CryoDataError as err:
                raise CryoDataError(f"grid dataset {dataset!r}", f"{err.where}: {err.problem}", err.fix) from None
        else:
            ensure_dataset(table, str(cache), True, self.progress, **_simulation(ds, self.preset.seed))
        if not (dataset in self._prepared or timed(dataset)):
            record(dataset, time.perf_counter() - t0)
        self._prepared.add(dataset)

    def _split_table(self, ds: dict[str, Any]) -> ParticleTable:
        """The user's table, checked; if it has no split column, the stratified split made (once) into the grid."""
        name, source = ds["name"], Path(ds["table"])
        entry = f"grid dataset {name!r} ({source})"
        if not source.is_file():
            raise ConfigError(f"grid preset {self.preset.name!r}, dataset {name!r}, key 'table' ({source})", "table not found",
                              "fix the path ('table' in the preset or --dataset_table)")
        try:
            table = read_particle_table(source, require_labels=True)
        except CryoDataError as err:
            raise CryoDataError(f"grid dataset {name!r}", f"{err.where}: {err.problem}", err.fix) from None
        if table.df["path"].isna().any():
            raise CryoDataError(entry, "is a coordinate table (no subtomogram paths)",
                                "extract the subtomograms first (cryomonai extract) and point at its table")
        splits = table.df["split"]
        if splits.notna().any():
            if splits.isna().any():
                raise CryoDataError(entry, f"{int(splits.isna().sum())} rows have no split",
                                    "give every row a split (train/val/test), or drop the column to split here")
            return _usable(entry, table)
        target = self.layout.particles(name)
        if target.is_file():
            made = read_particle_table(target)
            if len(made) != len(table) or list(made.df["path"]) != list(table.df["path"]):
                raise CryoDataError(target, f"is the split of another table than {source}",
                                    f"remove {self.layout.data_dir(name)} to split the new table (or use a new --out)")
            return made
        fractions = ds.get("split_fractions", [0.6, 0.2, 0.2])
        df = table.df.copy()
        df["split"] = stratified_split(df["label"].to_numpy(), fractions, seed=self.preset.seed)
        _usable(entry, ParticleTable(df, list(table.class_names)))  # before anything is written
        target.parent.mkdir(parents=True, exist_ok=True)
        write_particle_table(ParticleTable(df, list(table.class_names)), target)
        return read_particle_table(target)

    def _check_fractions(self, dataset: str, table: ParticleTable) -> None:
        """Warn (once) about classes too small for a label fraction: they keep one example (more than the fraction)."""
        if dataset in self._warned:
            return
        self._warned.add(dataset)
        train = table.df[table.df["split"] == "train"]
        counts = train["label"].value_counts()
        for name in table.class_names:
            n = int(counts.get(name, 0))
            if n == 0:
                warnings.warn(f"grid dataset {dataset!r}: class {name!r} has no labelled training particles; "
                              "it is kept, but no arm can learn it", UserWarning, stacklevel=4)
                continue
            short = [f for f in self.preset.label_fractions if n * float(f) < 1]
            if short:
                warnings.warn(f"grid dataset {dataset!r}: class {name!r} has {n} labelled training particles; at "
                              f"{', '.join(f'{100 * float(f):g} %' for f in short)} labels it keeps 1 (kept, more than "
                              "the fraction)", UserWarning, stacklevel=4)
