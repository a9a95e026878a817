"""The experiment grid of Gupta et al. (2022, Table 1 / Figure 8) on top of the bundle, and its report.

* :mod:`~cryomonai.experiment.preset` — :class:`GridPreset` and :func:`load_preset` (what a grid runs);
* :mod:`~cryomonai.experiment.grid` — :func:`run_grid`: datasets × methods × label fractions ×
  repeats, every cell a run of the ``cryo_ssl`` bundle (:mod:`cryomonai.pipeline`), resumable;
* :mod:`~cryomonai.experiment.parallel` — the grid's training runs in worker processes (the
  preset's ``workers``), the rest of the protocol unchanged;
* :mod:`~cryomonai.experiment.progress` — the grid's progress: its runs counted, one bar (or one log
  line per finished run) with an ETA;
* :mod:`~cryomonai.experiment.record` — :class:`GridRecord`: what a grid ran and where, the one
  thing the grid hands its report;
* :mod:`~cryomonai.experiment.report` — :func:`write_table` (``table.md`` in Table 1's layout) and
  :func:`write_report` (the table, the t-tests and the figures from ``results.csv``);
* :mod:`~cryomonai.experiment.report_grid` — :func:`write_grid_report`: the report of a finished
  grid, with embeddings before/after pretraining and 3D Grad-CAM (Figure 8).

The statistics, readouts and Grad-CAM maps are in :mod:`cryomonai.evaluation`, the figures in
:mod:`cryomonai.visualize`.
"""

from cryomonai.experiment.grid import run_grid
from cryomonai.experiment.preset import GridPreset, load_preset
from cryomonai.experiment.record import GridRecord
from cryomonai.experiment.report import write_report, write_table
from cryomonai.experiment.report_grid import write_grid_report

__all__ = ["GridPreset", "GridRecord", "load_preset", "run_grid", "write_grid_report", "write_report", "write_table"]
