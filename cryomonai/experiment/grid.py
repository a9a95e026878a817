"""The experiment grid of Gupta et al. (2022, §4–5): datasets × methods × label fractions × repeats.

Every cell is a run of the ``cryo_ssl`` bundle (:func:`cryomonai.pipeline.run_bundle`), not a
second training loop:

1. per dataset (an SNR level): the built-in simulator writes it once (the bundle's
   ``ensure_dataset``), split 60/20/20 (stratified);
2. per (dataset, SSL method): ``pretrain`` on the whole training split without labels;
3. per (dataset, method, label fraction, repeat): ``finetune`` on the stratified labelled fraction
   (``label_seed = repeat``, so every method sees the same subset within a repeat; nested across
   fractions), from the pretrained encoder or from random weights (``method = "random"``), with
   model selection on the validation split (``finetune_best.pt``); then ``evaluate`` on the test
   split (accuracy and ``predictions_test.csv``) and on the validation split;
4. cheap extra readouts on frozen encoder features of the same labelled subset
   (:mod:`cryomonai.experiment.readouts`): a linear probe and k-nearest neighbours.

Each finished cell appends one row to ``results.csv`` (rewritten atomically), and a rerun skips
the rows already there: the grid resumes. A pretraining or fine-tuning run killed half-way
resumes from its last epoch checkpoint (the bundle's ``--resume``).

Layout of ``out_dir``::

    data/<dataset>/                      simulated subtomograms + particles.star
    pretrain/<dataset>/<method>/         models/pretrain.pt, eval/ (TensorBoard)
    cells/<dataset>/<method>/f<pct>_r<repeat>/   models/finetune_best.pt, eval/predictions_test.csv
    results.csv, preset.json             one row per cell; the preset the grid ran with
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cryomonai.errors import CryoDataError

__all__ = ["GridCell", "GridPreset", "RESULT_COLUMNS", "grid_cells", "load_preset", "run_grid"]

#: the columns of ``results.csv``, in order
RESULT_COLUMNS = [
    "dataset", "snr", "method", "label_fraction", "repeat", "seed", "n_labelled", "best_val_accuracy",
    "test_accuracy", "linear_probe_accuracy", "knn_accuracy", "finetune_seconds", "pretrain_seconds", "run_dir",
]
_CELL_KEY = ["dataset", "method", "label_fraction", "repeat"]


@dataclass
class GridPreset:
    """What a grid runs (a JSON file in the bundle's ``configs/grid/``; see :func:`load_preset`).

    Attributes:
        name: preset name.
        datasets: one dict per dataset: ``name``, ``snr`` (number or ``"inf"``) and any other
            :func:`~cryomonai.simulate.dataset.simulate_dataset` argument (``n_per_class``, ``box``,
            ``binning``, ``max_shift``, ``n_neighbours``, ``seed``, ``classes``).
        methods: ``"random"`` (random init, the baseline) and SSL method names (bundle overlays).
        label_fractions: fractions of the training labels (the paper: 0.25, 0.5, 0.75, 1.0).
        repeats: repeats per cell (the paper: 5), seeds ``seed + repeat``.
        seed: base seed.
        encoder: encoder name (bundle overlay).
        common: bundle overrides for every run (``batch_size``, ``num_workers``, ``progress`` ...).
        pretrain: bundle overrides for pretraining (``epochs``, ``lr`` ...).
        pretrain_by_method: per-method pretraining overrides, applied after ``pretrain``.
        finetune: bundle overrides for fine-tuning (``epochs``, ``lr`` ...).
        readouts: also compute linear-probe and kNN accuracy on frozen features.
        report: arguments of the report (``gradcam_examples``, ``embedding``).
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
    readouts: bool = True
    report: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        where = f"grid preset {self.name!r}"
        if not self.datasets or not self.methods:
            raise CryoDataError(where, "needs at least one dataset and one method", "list them in the preset JSON")
        names = [d.get("name") for d in self.datasets]
        if None in names or len(set(names)) != len(names):
            raise CryoDataError(where, f"dataset names {names} are missing or repeated", "give every dataset a unique 'name'")
        bad = [f for f in self.label_fractions if not 0 < float(f) <= 1]
        if bad:
            raise CryoDataError(where, f"label fractions {bad} are outside (0, 1]", "use e.g. [0.25, 0.5, 0.75, 1.0]")
        if int(self.repeats) < 1:
            raise CryoDataError(where, f"repeats={self.repeats}", "use at least 1 (the paper: 5)")


@dataclass(frozen=True)
class GridCell:
    """One fine-tuning run of the grid."""

    dataset: str
    method: str
    label_fraction: float
    repeat: int

    @property
    def run_dir(self) -> str:
        """The cell's folder relative to the grid's ``out_dir``."""
        return f"cells/{self.dataset}/{self.method}/f{round(self.label_fraction * 100):03d}_r{self.repeat}"


def preset_dir() -> Path:
    """The bundle's folder of grid presets (``configs/grid``)."""
    from cryomonai.pipeline import bundle_dir

    return bundle_dir() / "configs" / "grid"


def load_preset(preset: str | os.PathLike, **overrides: Any) -> GridPreset:
    """A preset by name (``"cpu"``, ``"paper"``: ``configs/grid/<name>.json``) or JSON path.

    ``overrides`` replace top-level keys (e.g. ``repeats=1``).
    """
    path = Path(preset)
    if not path.suffix:
        path = preset_dir() / f"{preset}.json"
    if not path.is_file():
        found = sorted(p.stem for p in preset_dir().glob("*.json"))
        raise CryoDataError(path, "grid preset not found", f"use one of {found} or a JSON file path")
    try:
        spec = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise CryoDataError(path, f"not valid JSON ({err})", "fix the preset file") from None
    spec.update(overrides)
    spec.setdefault("name", path.stem)
    unknown = set(spec) - set(GridPreset.__dataclass_fields__) - {"description"}
    if unknown:
        raise CryoDataError(path, f"unknown preset keys {sorted(unknown)}", f"use {sorted(GridPreset.__dataclass_fields__)}")
    spec.pop("description", None)
    return GridPreset(**spec)


def grid_cells(preset: GridPreset) -> Iterator[GridCell]:
    """Every cell, dataset by dataset, then repeat, fraction and method (so a stopped grid has
    complete repeats of the first datasets)."""
    for ds in preset.datasets:
        for repeat in range(int(preset.repeats)):
            for frac in preset.label_fractions:
                for method in preset.methods:
                    yield GridCell(ds["name"], method, float(frac), repeat)


def _snr(ds: dict[str, Any]) -> float:
    return float(ds.get("snr", math.inf))


def _simulation(ds: dict[str, Any], seed: int) -> dict[str, Any]:
    sim = {k: v for k, v in ds.items() if k != "name"}
    sim["snr"] = _snr(ds)
    sim.setdefault("seed", seed)
    return sim


def _write_text(path: Path, text: str) -> None:
    from cryomonai.io.atomic import atomic_write

    with atomic_write(path, "w") as fh:
        fh.write(text)


def _resumable(ckpt_dir: Path, prefix: str) -> bool:
    """Whether a run stopped half-way left an epoch checkpoint to resume from."""
    from cryomonai.engines.checkpoints import latest_checkpoint

    return ckpt_dir.is_dir() and latest_checkpoint(ckpt_dir, prefix) is not None


class GridRunner:
    """Runs the cells of ``preset`` under ``out_dir``; see the module docstring."""

    def __init__(self, preset: GridPreset, out_dir: str | os.PathLike, progress: bool = True) -> None:
        self.preset, self.out, self.progress = preset, Path(out_dir).resolve(), progress
        self.results_path = self.out / "results.csv"
        self._features: dict[tuple[str, str, int], np.ndarray] = {}
        self._pretrain_seconds: dict[tuple[str, str], float] = {}

    # -- bookkeeping ----------------------------------------------------------------------------
    def results(self) -> pd.DataFrame:
        """The rows written so far (an empty frame with :data:`RESULT_COLUMNS` if none)."""
        if not self.results_path.is_file():
            return pd.DataFrame(columns=RESULT_COLUMNS)
        try:
            return pd.read_csv(self.results_path)
        except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
            raise CryoDataError(self.results_path, f"unreadable ({err})", "move it away to rerun the grid") from None

    def _done(self, df: pd.DataFrame) -> set[tuple]:
        return {(r.dataset, r.method, round(float(r.label_fraction), 6), int(r.repeat)) for r in df.itertuples()}

    def _append(self, row: dict[str, Any]) -> None:
        from cryomonai.io.atomic import atomic_write

        df = pd.concat([self.results(), pd.DataFrame([row], columns=RESULT_COLUMNS)], ignore_index=True)
        with atomic_write(self.results_path, "w") as fh:
            df.to_csv(fh, index=False)

    def data_dir(self, dataset: str) -> Path:
        """The folder of ``dataset``'s particles.star and the bundle's volume cache."""
        return self.out / "data" / dataset

    def cache_path(self, dataset: str) -> str:
        """The bundle's float16 volume cache of ``dataset`` (``cache_path`` of ``common.json``)."""
        return str(self.data_dir(dataset) / "cache" / "volumes.npy")

    def _common(self, ds: dict[str, Any], seed: int) -> dict[str, Any]:
        data = self.data_dir(ds["name"])
        return dict(
            dataset_dir=str(data), cache_path=self.cache_path(ds["name"]), simulation=_simulation(ds, self.preset.seed), seed=seed,
            progress=self.progress, **copy.deepcopy(self.preset.common),
        )

    # -- the three steps ------------------------------------------------------------------------
    def pretrained_checkpoint(self, ds: dict[str, Any], method: str) -> str:
        """Pretrain ``method`` on dataset ``ds`` unless done; the checkpoint path ("" for random)."""
        if method == "random":
            return ""
        from cryomonai.pipeline import run_bundle

        run = self.out / "pretrain" / ds["name"] / method
        final = run / "models" / "pretrain.pt"
        key = (ds["name"], method)
        if not final.is_file():
            overrides = {**copy.deepcopy(self.preset.pretrain), **copy.deepcopy(self.preset.pretrain_by_method.get(method, {}))}
            t0 = time.perf_counter()
            run_bundle(
                "pretrain", method, self.preset.encoder, ckpt_dir=str(run / "models"), output_dir=str(run / "eval"),
                resume=_resumable(run / "models", "pretrain"), **{**self._common(ds, self.preset.seed), **overrides},
            )
            seconds = time.perf_counter() - t0
            _write_text(run / "seconds.txt", f"{seconds:.1f}\n")
        if key not in self._pretrain_seconds:
            stamp = run / "seconds.txt"
            self._pretrain_seconds[key] = float(stamp.read_text()) if stamp.is_file() else float("nan")
        return str(final)

    def run_cell(self, cell: GridCell) -> dict[str, Any]:
        """Fine-tune, select on validation, evaluate on test (and the readouts): one results row."""
        from cryomonai.pipeline import run_bundle

        ds = next(d for d in self.preset.datasets if d["name"] == cell.dataset)
        seed = self.preset.seed + cell.repeat
        pretrained = self.pretrained_checkpoint(ds, cell.method)
        run = self.out / cell.run_dir
        common = self._common(ds, seed)
        paths = dict(ckpt_dir=str(run / "models"), output_dir=str(run / "eval"))
        labels = dict(label_fraction=cell.label_fraction, label_seed=cell.repeat)
        t0 = time.perf_counter()
        if not (run / "models" / "finetune_final.pt").is_file():
            run_bundle(
                "finetune", encoder=self.preset.encoder, pretrained=pretrained, resume=_resumable(run / "models", "finetune"),
                **labels, **paths, **{**common, **copy.deepcopy(self.preset.finetune)},
            )
        seconds = time.perf_counter() - t0
        acc = {}
        for split in ("val", "test"):
            wf = run_bundle("evaluate", encoder=self.preset.encoder, **{"validate#split": split}, **labels, **paths, **common)
            acc[split] = float(wf.parser.get_parsed_content("validate#evaluator").state.metrics["accuracy"])
            if split == "test":
                n_labelled = len(wf.parser.get_parsed_content("train#labelled"))
                table = wf.parser.get_parsed_content("data#table")
        probe = knn = float("nan")
        if self.preset.readouts:
            probe, knn = self._readouts(cell, pretrained, table, seed)
        return {
            "dataset": cell.dataset, "snr": _snr(ds), "method": cell.method, "label_fraction": cell.label_fraction,
            "repeat": cell.repeat, "seed": seed, "n_labelled": n_labelled, "best_val_accuracy": acc["val"],
            "test_accuracy": acc["test"], "linear_probe_accuracy": probe, "knn_accuracy": knn,
            "finetune_seconds": round(seconds, 2),
            "pretrain_seconds": self._pretrain_seconds.get((cell.dataset, cell.method), float("nan")),
            "run_dir": cell.run_dir,
        }

    def _readouts(self, cell: GridCell, pretrained: str, table: Any, seed: int) -> tuple[float, float]:
        from cryomonai.experiment.readouts import encoder_features, frozen_readouts

        # the random encoder depends on the seed; a pretrained one does not
        key = (cell.dataset, cell.method, seed if cell.method == "random" else -1)
        if key not in self._features:
            cache = self.cache_path(cell.dataset)
            kept = {k: v for k, v in self._features.items() if k[0] == cell.dataset}  # one dataset at a time
            self._features = {**kept, key: encoder_features(table, cache, self.preset.encoder, pretrained, seed)}
        return frozen_readouts(self._features[key], table, cell.label_fraction, cell.repeat)

    # -- the grid -------------------------------------------------------------------------------
    def run(self, max_cells: int | None = None) -> pd.DataFrame:
        """Run every cell not yet in ``results.csv`` (at most ``max_cells``); returns all rows."""
        self.out.mkdir(parents=True, exist_ok=True)
        _write_text(self.out / "preset.json", json.dumps(asdict(self.preset), indent=2, default=str))
        done = self._done(self.results())
        todo = [c for c in grid_cells(self.preset) if (c.dataset, c.method, round(c.label_fraction, 6), c.repeat) not in done]
        for i, cell in enumerate(todo[:max_cells]):
            print(f"[grid {self.preset.name}] cell {i + 1}/{len(todo)}: {cell}", flush=True)
            self._append(self.run_cell(cell))
        return self.results()


def run_grid(
    preset: str | os.PathLike | GridPreset = "cpu",
    out_dir: str | os.PathLike = "runs/grid",
    report: bool = True,
    progress: bool = True,
    max_cells: int | None = None,
    **overrides: Any,
) -> pd.DataFrame:
    """Run (or resume) a grid and write its report into ``out_dir``.

    Args:
        preset: a preset name (``"cpu"``, ``"paper"``), a preset JSON path, or a :class:`GridPreset`.
        out_dir: the grid's folder (see the module docstring); rerunning resumes.
        report: write the report (:func:`cryomonai.experiment.report_grid.write_grid_report`) when done.
        progress: progress bars of the bundle runs.
        max_cells: stop after this many new cells (the report is written only when all are done).
        overrides: top-level preset keys to replace (e.g. ``repeats=1``).

    Returns:
        ``results.csv`` as a DataFrame.
    """
    if not isinstance(preset, GridPreset):
        preset = load_preset(preset, **overrides)
    runner = GridRunner(preset, out_dir, progress)
    results = runner.run(max_cells)
    n_cells = sum(1 for _ in grid_cells(preset))
    if report and len(results) >= n_cells:
        from cryomonai.experiment.report_grid import write_grid_report

        write_grid_report(runner)
    return results


def seconds_summary(results: pd.DataFrame) -> dict[str, float]:
    """Total fine-tuning and pretraining seconds of a results table."""
    pre = results.drop_duplicates(["dataset", "method"])["pretrain_seconds"].fillna(0).sum()
    return {"finetune_seconds": float(results["finetune_seconds"].sum()), "pretrain_seconds": float(pre)}
