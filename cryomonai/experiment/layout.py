"""A grid's folder layout — the one place it is spelled (the grid, its presets and ``ship-weights`` read it here).

Layout of a grid's folder (``out``)::

    data/<dataset>/                      simulated subtomograms + particles.star (a user's table: only the
                                         split it lacked, as particles.star, and the cache)
    data/<dataset>/cache/volumes.npy     the bundle's float16 volume cache
    data/<dataset>/context/              the context control's test boxes without their target (table + cache)
    pretrain/<dataset>/<method>/s<seed>/ models/pretrain.pt, eval/ (TensorBoard), seconds.txt
    cells/<dataset>/<method>/<recipe>/f<pct>_r<repeat>/   models/finetune_best.pt, eval/predictions_test.csv
    selection.csv                        validation accuracy of every recipe tried, the chosen one marked
    recipes_extended.json                the recipes added where a choice sat at the space's edge (``extend_edges``)
    results.csv, preset.json             one row per cell; the preset the grid ran with
    bundle_configs.json                  a digest of each bundle config file when the grid started
    code.json                            a digest of each cryomonai module when the grid started
    timings.csv, timing.md               where the time went: one row per step run (set-up vs compute)
    progress.json                        the pace so far, for a resumed grid's ETA
    jobs.csv, jobs/<job id>/             SLURM executor only: the jobs submitted, their logs
    interim/                             while running: the report over the repeats finished so far

Example:
    >>> grid = GridLayout("runs/g")
    >>> grid.pretrain_dir("snr_1", "moco", 3).as_posix(), GridLayout.cell_dir("snr_1", "random", "fast", 0.25, 1)
    ('runs/g/pretrain/snr_1/moco/s3', 'cells/snr_1/random/fast/f025_r1')
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryomonai.layout import RunLayout

__all__ = ["GridLayout"]


@dataclass(frozen=True)
class GridLayout:
    """The folders and files of the grid rooted at ``root``."""

    root: Path

    def __init__(self, root: str | os.PathLike) -> None:
        object.__setattr__(self, "root", Path(root))

    results = property(lambda self: self.root / "results.csv", doc="One row per cell.")
    selection = property(lambda self: self.root / "selection.csv", doc="The recipe-selection runs.")
    recipes_extended = property(lambda self: self.root / "recipes_extended.json",
                                doc="The recipes the grid added at the edge of the space (preset key ``extend_edges``).")
    timings = property(lambda self: self.root / "timings.csv", doc="One row per step the grid ran.")
    progress = property(lambda self: self.root / "progress.json", doc="The pace so far (a resumed grid's ETA).")
    timing_md = property(lambda self: self.root / "timing.md", doc="Where the time went, as a table.")
    preset = property(lambda self: self.root / "preset.json", doc="The preset the grid ran with.")
    bundle_configs = property(lambda self: self.root / "bundle_configs.json",
                              doc="A digest of each bundle config file the grid started with.")
    code = property(lambda self: self.root / "code.json", doc="A digest of each cryomonai module the grid started with.")
    jobs = property(lambda self: self.root / "jobs.csv", doc="The SLURM jobs submitted (executor ``slurm``).")
    job_logs = property(lambda self: self.root / "jobs" / "%j", doc="submitit's folder per job (``%j``: its id).")
    interim = property(lambda self: self.root / "interim", doc="The interim report while repeats are missing.")

    def data_dir(self, dataset: str) -> Path:
        """``dataset``'s particles.star (simulated, or the split made for a user's table) and cache."""
        return self.root / "data" / dataset

    def particles(self, dataset: str) -> Path:
        """The particle table the grid writes for ``dataset`` (simulated, or a user's table split here)."""
        return self.data_dir(dataset) / "particles.star"

    def simulation(self, dataset: str) -> Path:
        """A simulated dataset's record (``simulation.json``: its voxel size …)."""
        return self.data_dir(dataset) / "simulation.json"

    def cache(self, dataset: str) -> Path:
        """The bundle's float16 volume cache of ``dataset`` (``cache_path`` of ``common.json``)."""
        return self.data_dir(dataset) / "cache" / "volumes.npy"

    def pretrain_dir(self, dataset: str, method: str, pretrain_seed: int) -> Path:
        """The folder of one pretraining run."""
        return self.root / "pretrain" / dataset / method / f"s{int(pretrain_seed)}"

    def pretrain_run(self, dataset: str, method: str, pretrain_seed: int) -> RunLayout:
        """That pretraining as a run (``.pretrain``: its checkpoint)."""
        return RunLayout(self.pretrain_dir(dataset, method, pretrain_seed))

    @staticmethod
    def cell_dir(dataset: str, method: str, recipe: str, label_fraction: float, repeat: int) -> str:
        """A cell's folder fine-tuned with ``recipe``, relative to the grid's folder (``results.csv``'s ``run_dir``)."""
        return f"cells/{dataset}/{method}/{recipe}/f{round(label_fraction * 100):03d}_r{repeat}"

    def cell_run(self, run_dir: str) -> RunLayout:
        """The run at ``run_dir`` (a :meth:`cell_dir`) as a run."""
        return RunLayout(self.root / run_dir)
