"""What a grid ran and where: the one record the grid hands its report (no reaching into the runner)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from cryomonai.experiment.preset import GridPreset

__all__ = ["GridRecord"]


@dataclass(frozen=True)
class GridRecord:
    """A grid's inputs and outputs, by path.

    Attributes:
        preset: the preset the grid ran.
        out: the grid's folder.
        results_path: ``results.csv`` (one row per cell).
        selection_path: ``selection.csv`` (the recipe-selection runs).
        timings_path: ``timings.csv`` (where the time went).
        tables: dataset name → the particle table its runs read (a user's own, or the grid's).
        caches: dataset name → its volume cache (``.npy``; the sidecar ``.npy.json`` holds the sizes).
        pretrained: (dataset, SSL method, pretraining seed) → that pretraining's ``pretrain.pt``.
    """

    preset: GridPreset
    out: Path
    results_path: Path
    selection_path: Path
    timings_path: Path
    tables: dict[str, Path]
    caches: dict[str, Path]
    pretrained: dict[tuple[str, str, int], Path]

    def results(self) -> pd.DataFrame:
        """``results.csv``."""
        return pd.read_csv(self.results_path)

    def selection(self) -> pd.DataFrame:
        """``selection.csv`` (empty if no recipe was selected)."""
        return pd.read_csv(self.selection_path) if self.selection_path.is_file() else pd.DataFrame()

    def dataset(self, name: str) -> dict:
        """The preset's entry of dataset ``name``."""
        return next(d for d in self.preset.datasets if d["name"] == name)
