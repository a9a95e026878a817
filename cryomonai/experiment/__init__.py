"""The experiment grid of Gupta et al. (2022, Table 1 / Figure 8) on top of the bundle, and its report.

It reads like the bundle: a preset → a run graph → one scheduler handing runs to an executor →
results tables → report, each a small module; the folder layout in one object.

* :mod:`~cryomonai.experiment.preset` — :class:`GridPreset` and :func:`load_preset` (what a grid runs;
  a preset may inherit another with ``base``), :func:`grid_cells`;
* :mod:`~cryomonai.experiment.layout` — :class:`GridLayout`: the grid's folders and files, spelled once;
* :mod:`~cryomonai.experiment.data` — the datasets: simulated, or a user's table checked and split;
* :mod:`~cryomonai.experiment.graph` — the run graph: pretrain → select → cells;
* :mod:`~cryomonai.experiment.scheduler` — the one scheduler: trains the graph's runs in an executor,
  evaluates the cells in the grid's order;
* :mod:`~cryomonai.experiment.executors` — who trains: this process (``workers: 1``), worker
  processes (``workers`` > 1); :mod:`~cryomonai.experiment.slurm` — SLURM jobs through submitit;
* :mod:`~cryomonai.experiment.training` — a run of the bundle: pretrain, fine-tune, evaluate;
* :mod:`~cryomonai.experiment.tables` — ``results.csv``, ``selection.csv``, ``timings.csv``;
* :mod:`~cryomonai.experiment.selection` — each arm's recipe, chosen on validation;
  :mod:`~cryomonai.experiment.edges` — the recipes added where that choice sits at the edge of the
  space (``extend_edges``), recorded in ``recipes_extended.json``;
* :mod:`~cryomonai.experiment.grid` — :func:`run_grid`: the driver (recipes chosen on validation,
  cells evaluated, the tables written), resumable; :mod:`~cryomonai.experiment.resume` — only with the
  preset it started with;
* :mod:`~cryomonai.experiment.progress` — the grid's progress: its runs counted, one bar (or one log
  line per finished run) with an ETA; :mod:`~cryomonai.experiment.status` — the same read from a grid's
  folder without running it (``cryomonai grid --status``);
* :mod:`~cryomonai.experiment.record` — :class:`GridRecord`: what a grid ran and where, the one
  thing the grid hands its report;
* :mod:`~cryomonai.experiment.report` — :func:`write_table` (``table.md`` in Table 1's layout) and
  :func:`write_report` (the table, the t-tests and the figures from ``results.csv``);
* :mod:`~cryomonai.experiment.report_checks` — ``table.md``'s checks: the statistics with Holm, the
  fair-baseline and own-probe checks on validation, the deployed classifier, the recipe-space edge
  (computed in :mod:`~cryomonai.experiment.checks`; the cells' readouts in
  :mod:`~cryomonai.experiment.cell_readouts`);
* :mod:`~cryomonai.experiment.advice` — ``table.md``'s answer to "which method should I use?": per dataset
  and fraction, the SSL arm best on validation as deployed, its test gain over random init (Holm), and
  the fewest labels at which it reaches random init with the most;
* :mod:`~cryomonai.experiment.report_grid` — :func:`write_grid_report`: the report of a finished
  grid, with embeddings before/after pretraining and 3D Grad-CAM (Figure 8);
* :mod:`~cryomonai.experiment.compare` — two runs of one preset compared (``cryomonai compare``);
* :mod:`~cryomonai.experiment.ship` — a grid's best encoder shipped with the bundle (``cryomonai ship-weights``).

The statistics, readouts and Grad-CAM maps are in :mod:`cryomonai.evaluation`, the figures in
:mod:`cryomonai.visualize`.
"""

from cryomonai.experiment.grid import run_grid
from cryomonai.experiment.layout import GridLayout
from cryomonai.experiment.preset import GridCell, GridPreset, grid_cells, load_preset
from cryomonai.experiment.record import GridRecord
from cryomonai.experiment.report import write_report, write_table
from cryomonai.experiment.report_grid import write_grid_report

__all__ = ["GridCell", "GridLayout", "GridPreset", "GridRecord", "grid_cells", "load_preset", "run_grid",
           "write_grid_report", "write_report", "write_table"]
