"""The ``cryomonai`` command line (python-fire): ``cryomonai <command> --help``.

Each command imports what it runs inside its body (torch, MONAI, the simulator take seconds to
import), so ``cryomonai --help`` and a command's ``--help`` start at once. These, and MONAI's in
:mod:`cryomonai.io.mrc` (``MrcReader``), are the package's only function-local imports.

The bundle commands (``pretrain``, ``finetune``, ``evaluate``, ``infer``, ``embed``) run the ``cryo_ssl``
bundle's run ids through one function, :func:`_bundle`: ``--method``/``--encoder`` choose overlays, any
other ``--key value`` (``--epochs 5``, ``--ssl_method#queue_size 64``) overrides a bundle key, and
``--dry_run`` prints the equivalent ``python -m monai.bundle run`` command instead of running it.

What the commands say as they go are log lines on stderr (``<date> <time> INFO cryomonai.…: …``,
:mod:`cryomonai.logs`); the long ones (``grid``, ``simulate``, ``extract`` and the bundle commands)
also append them to ``--log_file PATH``. A user error (data or configuration,
:class:`~cryomonai.errors.CryoError`) is one ``cryomonai: <error>`` line, not a log line.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from pathlib import Path

import fire

from cryomonai.errors import ConfigError, GridJobError, user_error
from cryomonai.layout import RunLayout
from cryomonai.logs import logging_to

__all__ = ["main"]

log = logging.getLogger(__name__)


def _snrs(snr) -> list[float]:
    """``0.05`` / ``"inf,0.05,0.03"`` / ``(inf, 0.05)`` → list of floats."""
    values = snr.replace(" ", "").split(",") if isinstance(snr, str) else snr if isinstance(snr, (list, tuple)) else [snr]
    try:
        return [float(s) for s in values if s != ""]
    except (TypeError, ValueError):
        raise ConfigError(f"--snr {snr}", "is not a number or a comma list of numbers", "e.g. --snr inf,0.05,0.03") from None


def _choose(flag: str, value, choices: tuple[str, ...]) -> None:
    """A ConfigError unless ``value`` (None: the default) is one of ``choices``."""
    if value is not None and value not in choices:
        raise ConfigError(f"--{flag} {value}", "is not one of the choices", f"use one of: {', '.join(choices)}")


def simulate(
    out: str = "data_sim",
    snr="inf,0.05,0.03",
    n_per_class: int = 500,
    box: int = 32,
    seed: int = 0,
    workers: int | None = None,
    n_neighbours: int | tuple[int, int] = (0, 4),
    classes: str | None = None,
    overwrite: bool = False,
    binning: int = 1,
    max_shift: float = 8.0,
    neighbour_gap: float | tuple[float, float] = (0.0, 8.0),
    neighbour_contact: str = "largest",
    context: bool = False,
    log_file: str | None = None,
) -> list[str]:
    """Simulate labelled subtomogram datasets, one folder per SNR: ``<out>/snr_<snr>/particles.star``.

    Args:
        out: parent folder.
        snr: one SNR or a comma list (``inf`` = noise-free).
        n_per_class: subtomograms per class (paper: 500).
        box: cube size in voxels (paper: 32).
        seed: random seed (the data are a deterministic function of it).
        workers: processes (default: all cores).
        n_neighbours: crowding neighbours per subtomogram; ``[0,4]`` (default) draws 0 to 4 per
            subtomogram, an integer fixes it.
        classes: comma list of template ids (default: the 10 SHREC classes).
        overwrite: replace existing folders.
        binning: simulate at ``box × binning`` (10 Å voxels), then Fourier-bin to ``box``.
        max_shift: target displacement from the box centre, ± voxels per axis (unbinned).
        neighbour_gap: each neighbour's distance beyond contact, ``[lo,hi]`` voxels drawn per
            neighbour (default ``[0,8]``).
        neighbour_contact: contact with a sphere of the ``largest`` template's radius around the
            target (default: the neighbours do not reveal the target's size) or the ``target``'s own;
            ``--n_neighbours 4 --neighbour_gap "[0,2]" --neighbour_contact target`` is the old
            touching shell.
        context: also write each box without its target (``<name>_context.mrc``, table column
            ``cryoContextPath``): the context control.
        log_file: also append the log lines to this file.
    """
    from cryomonai.simulate.dataset import simulate_dataset  # lazy: torch and the simulator, only when run

    cls = tuple(classes.split(",")) if isinstance(classes, str) else classes
    tables = []
    with logging_to(log_file):
        for s in _snrs(snr):
            t0 = time.time()
            folder = Path(out) / f"snr_{'inf' if math.isinf(s) else f'{s:g}'}"
            table = simulate_dataset(folder, n_per_class, s, box, cls, seed, n_neighbours, max_shift=max_shift,
                                     workers=workers, overwrite=overwrite, binning=binning,
                                     neighbour_gap=neighbour_gap, neighbour_contact=neighbour_contact, context=context)
            n = n_per_class * len(cls or range(10))
            dt = time.time() - t0
            log.info("%s: %d subtomograms in %.1f s (%.1f subtomograms/s)", table, n, dt, n / dt)
            tables.append(str(table))
    return tables


def simulate_tomogram(
    out: str = "data_sim/tomogram", shape="128,256,256", n_particles: int = 100, snr: float = 0.05, seed: int = 0,
    box: int = 32, overwrite: bool = False,
) -> str:
    """Simulate a whole tomogram (z,y,x = ``shape``) with particles at known coordinates (STAR)."""
    from cryomonai.simulate.tomogram import simulate_tomogram as _sim  # lazy: torch, only when run

    text = shape if isinstance(shape, str) else ",".join(str(v) for v in shape)
    try:
        shp = tuple(int(v) for v in text.split(","))
    except ValueError:
        shp = ()
    if len(shp) != 3:
        raise ConfigError(f"--shape {text}", "is not three whole numbers z,y,x", "e.g. --shape 128,256,256")
    return str(_sim(out, shp, n_particles, float(snr), box=box, seed=seed, overwrite=overwrite))


def montage(out: str = "docs/simulated_montage.png", snr="inf,0.05,0.03", box: int = 32, seed: int = 0) -> str:
    """PNG of central slices per class: clean target and the same particle at each SNR."""
    from cryomonai.visualize.preview import preview_montage  # lazy: torch and matplotlib, only when run

    return str(preview_montage(out, snrs=tuple(_snrs(snr)), box=box, seed=seed))


def demo(
    out: str = "runs/demo", n_per_class: int = 60, snr: float = 0.5, pretrain_epochs: int = 10,
    finetune_epochs: int = 20, label_fraction: float = 0.25, method: str = "moco", seed: int = 0,
) -> None:
    """A quick pipeline check on built-in simulated data: simulate → pretrain (MoCo) → fine-tune on 25 %
    of the labels from the pretrained encoder and from random init → test accuracy of both. Its
    defaults are too small to show the effect; the main job is ``cryomonai grid --preset cpu``."""
    from cryomonai.demo import demo as run_demo  # lazy: MONAI, only when run

    t0 = time.time()
    acc = run_demo(out, n_per_class, snr, pretrain_epochs, finetune_epochs, label_fraction, method, seed=seed)
    print(f"\ntest accuracy with {label_fraction:.0%} of the labels ({10 * n_per_class} simulated subtomograms, "
          f"SNR {snr:g}, {method} pretraining {pretrain_epochs} epochs, fine-tuning {finetune_epochs} epochs):")
    print(f"  pretrained encoder: {acc['pretrained']:.3f}\n  random init:        {acc['random']:.3f}")
    print(f"curves: {out}/curves.png   TensorBoard: tensorboard --logdir {out}   ({time.time() - t0:.0f} s)")


def _copick(tomo_type: str | None, voxel_spacing: float | None, user_id: str | None, session_id: str | None) -> dict:
    """The copick options given on the command line (as ``read_copick_picks`` keywords)."""
    given = {"tomo_type": tomo_type, "voxel_size": voxel_spacing, "user_id": user_id, "session_id": session_id}
    return {k: v for k, v in given.items() if v is not None}


def extract(
    picks: str, out: str, box: int = 32, voxel_size: float | None = None, edge: str = "report",
    tomogram: str | None = None, pick_voxel_size: float | None = None, normalise: bool = True, overwrite: bool = False,
    tomograms_star: str | None = None, copick_tomo_type: str | None = None, copick_voxel_spacing: float | None = None,
    copick_user_id: str | None = None, copick_session_id: str | None = None, log_file: str | None = None,
) -> str:
    """Extract subtomograms at particle picks → ``<out>/particles.star`` (+ MRC files, ``rejected_picks.csv``).

    Args:
        picks: STAR/CSV picks table (tomogram + x, y, z per row), a RELION-5 particles STAR file
            (``rlnTomoName`` + centred Å coordinates), a copick project's config JSON (labels = object
            names) or an ``x y z`` text file.
        out: output folder.
        box: subtomogram edge in voxels.
        voxel_size: target voxel size in Å (Fourier cropping/padding); default: the tomogram's.
        edge: boxes crossing the tomogram edge: ``report`` (left out, listed), ``pad`` (tomogram mean), ``error``.
        tomogram: the tomogram of all picks (needed for a text file; overrides the table's).
        pick_voxel_size: voxel size (Å) the coordinates are in; default: the tomogram's.
        normalise: zero mean, unit std per subtomogram.
        overwrite: replace an existing ``particles.star`` in ``out``.
        tomograms_star: a RELION-5 file's ``tomograms.star`` (default: next to ``picks``).
        copick_tomo_type, copick_voxel_spacing: for a copick project, the tomograms to extract from
            (default: the only type; the finest spacing that has it).
        copick_user_id, copick_session_id: for a copick project, the pick sets to read (default: any).
        log_file: also append the log lines to this file.
    """
    from cryomonai.data.extract import EDGE_POLICIES, REJECTED_FILE, extract_subtomograms, read_picks  # lazy: torch

    _choose("edge", edge, EDGE_POLICIES)
    with logging_to(log_file):
        table = read_picks(picks, tomogram, tomograms_star, _copick(copick_tomo_type, copick_voxel_spacing,
                                                                   copick_user_id, copick_session_id))
        res = extract_subtomograms(table, out, box, voxel_size, edge, normalise, pick_voxel_size, None, overwrite)
        rejected = (f"{len(res.rejected)} picks rejected (listed in {res.table.parent / REJECTED_FILE})"
                    if len(res.rejected) else "no pick rejected")
        log.info("%s: %d subtomograms of %d^3 voxels at %g A; %s", res.table, res.n_extracted, box, res.voxel_size,
                 rejected)
    return str(res.table)


def _bundle(run_id: str, method: str | None = None, encoder: str | None = None, distributed: bool = False,
            dry_run: bool = False, log_file: str | None = None, **keys) -> str | None:
    """The one path of every bundle command (``pretrain``, ``finetune``, ``evaluate``, ``infer``, ``embed``):
    ``run_id``'s configs with the ``method``/``encoder`` overlays, the bundle ``keys`` checked against
    them (a typo is a ConfigError), then run; ``dry_run``: the equivalent ``python -m monai.bundle run``
    command instead, nothing run."""
    from cryomonai.pipeline import bundle_args, bundle_command, check_overrides, run_bundle  # lazy: MONAI

    if isinstance(keys.get("device"), str) and not keys["device"].startswith(("$", "@")):  # --device cpu / cuda:1
        keys["device"] = f"$torch.device({keys['device']!r})"
    args = bundle_args(run_id, method, encoder, distributed, **keys)
    check_overrides(run_id, args["config_file"], keys)
    if dry_run:
        return bundle_command(run_id, **args)
    with logging_to(log_file):
        log.info("%s: %s", run_id, " ".join(f"{k}={v}" for k, v in keys.items()))
        run_bundle(run_id, method, encoder, distributed=distributed, **keys)
    return None


def _given(**keys) -> dict:
    """The bundle keys of the options given (None: the bundle's default)."""
    return {k: v for k, v in keys.items() if v is not None}


def _run_paths(out: str) -> dict:
    return RunLayout(out).bundle_paths()


def pretrain(out: str = "runs/pretrain", dataset_dir: str = "runs/data", method: str | None = None,
             encoder: str | None = None, distributed: bool = False, dry_run: bool = False,
             log_file: str | None = None, **overrides) -> str:
    """Self-supervised pretraining: the ``cryo_ssl`` bundle's ``pretrain`` run id → ``<out>/models/pretrain.pt``.

    Args:
        out: the run folder: ``models/`` (checkpoints) and ``eval/`` (TensorBoard logs).
        dataset_dir: the folder of ``particles.star``; with the bundle's ``simulate`` key (``True``, its
            default) a simulated dataset is made there first when it has none.
        method: the SSL method overlay, ``configs/methods/<method>.json`` (``moco``, ``simclr``, ``swav``,
            ``vicreg``; default: the bundle's, MoCo).
        encoder: the encoder overlay, ``configs/encoders/<encoder>.json`` (``rb3d``, ``rb3d_bn``, ``resnet10`` …).
        distributed: one rank of a DDP run, with ``multi_gpu_pretrain.json``:
            ``torchrun --standalone --nproc_per_node=2 -m cryomonai.cli pretrain --distributed``.
        dry_run: print the ``python -m monai.bundle run`` command, run nothing.
        log_file: also append cryomonai's log lines to this file.
        overrides: any key of the bundle (``configs/common.json``, ``pretrain.json``), e.g. ``--epochs 5``,
            ``--batch_size 32``, ``--ssl_method#queue_size 64``, ``--simulate False`` (capitalised).
    """
    keys = {**_run_paths(out), "dataset_dir": dataset_dir, **overrides}
    return _bundle("pretrain", method, encoder, distributed, dry_run, log_file, **keys) or str(RunLayout(out).pretrain)


def finetune(out: str = "runs/finetune", dataset_dir: str = "runs/data",
             pretrained: str = RunLayout("runs/pretrain").pretrain.as_posix(), encoder: str | None = None,
             distributed: bool = False, dry_run: bool = False, log_file: str | None = None, **overrides) -> str:
    """Fine-tune a classifier on the labelled subtomograms: the bundle's ``finetune`` run id →
    ``<out>/models/finetune_best.pt`` (best validation accuracy).

    Args:
        out: the run folder: ``models/`` (checkpoints) and ``eval/`` (TensorBoard logs, metrics).
        dataset_dir: the folder of ``particles.star`` (simulated there first if it has none, as in ``pretrain``).
        pretrained: the encoder to start from: a ``pretrain.pt`` (default: ``cryomonai pretrain``'s), a
            shipped name (``simclr_rb3d_bn_16``) or ``""`` for random init.
        encoder: the encoder overlay (must match ``pretrained``'s), e.g. ``rb3d_bn``.
        distributed: one rank of a DDP run (``multi_gpu_finetune.json``, under ``torchrun``).
        dry_run: print the ``python -m monai.bundle run`` command, run nothing.
        log_file: also append cryomonai's log lines to this file.
        overrides: any key of the bundle (``configs/common.json``, ``finetune.json``), e.g. ``--epochs 20``,
            ``--label_fraction 0.25``, ``--lr 0.001``, ``--box 16``.
    """
    keys = {**_run_paths(out), "dataset_dir": dataset_dir, "pretrained": pretrained, **overrides}
    return _bundle("finetune", None, encoder, distributed, dry_run, log_file, **keys) or str(RunLayout(out).finetune_best)


def evaluate(out: str = "runs/finetune", dataset_dir: str = "runs/data", checkpoint: str | None = None,
             encoder: str | None = None, dry_run: bool = False, log_file: str | None = None, **overrides) -> str:
    """Test accuracy of a fine-tuned classifier: the bundle's ``evaluate`` run id →
    ``<out>/eval/predictions_test.csv`` and the metrics beside it.

    Args:
        out: the fine-tuning run folder (its ``models/finetune_best.pt`` is evaluated; results in ``eval/``).
        dataset_dir: the folder of ``particles.star``, as in ``finetune``.
        checkpoint: another classifier (a path or a shipped name) instead of ``out``'s.
        encoder: the encoder overlay (the classifier's).
        dry_run: print the ``python -m monai.bundle run`` command, run nothing.
        log_file: also append cryomonai's log lines to this file.
        overrides: any key of the bundle (``configs/common.json``, ``finetune.json``, ``evaluate.json``),
            e.g. ``--validate#split val``.
    """
    keys = {**_run_paths(out), "dataset_dir": dataset_dir, **_given(checkpoint=checkpoint), **overrides}
    return _bundle("evaluate", None, encoder, False, dry_run, log_file, **keys) or str(Path(out) / "eval" / "predictions_test.csv")


def infer(table: str, checkpoint: str, out: str = "runs/infer", encoder: str | None = None, box: int | None = None,
          voxel_size: float | None = None, edge: str | None = None, batch_size: int | None = None,
          tomograms_star: str | None = None, dry_run: bool = False, log_file: str | None = None, **overrides) -> str:
    """Classify particles: the bundle's ``inference`` run id → ``<out>/predictions.star`` (+ ``.csv``,
    ``embeddings.npy``, ``embedding.png``, ``report.html``).

    Args:
        table: subtomogram table, or a picks table (tomogram + x, y, z, a RELION-5 particles file, a
            copick config; extracted on the fly).
        checkpoint: a fine-tuned classifier (``finetune_best.pt``) or a shipped name
            (``simclr_rb3d_bn_16_classifier``).
        out: output folder.
        encoder: the classifier's encoder overlay (``rb3d_bn`` for the shipped classifier).
        box: the classifier's input box (voxels; the shipped classifier: 16).
        voxel_size: cut boxes at this voxel size (Å; the shipped classifier: 20); default: the tomogram's.
        edge: boxes crossing the tomogram edge: ``report`` (left out, listed), ``pad``, ``error``.
        batch_size: particles per batch.
        tomograms_star: a RELION-5 particles file's ``tomograms.star`` (default: next to ``table``).
        dry_run: print the ``python -m monai.bundle run`` command, run nothing.
        log_file: also append cryomonai's log lines to this file.
        overrides: any key of the bundle (``configs/common.json``, ``inference.json``), e.g.
            ``--infer_min_probability 0.5``, ``--embedding_map pca``, ``--device cpu``.
    """
    from cryomonai.data.extract import EDGE_POLICIES  # lazy: torch, only when run

    _choose("edge", edge, EDGE_POLICIES)
    keys = {"output_dir": out, "infer_table": table, "checkpoint": checkpoint,
            **_given(box=box, infer_voxel_size=voxel_size, infer_edge=edge, batch_size=batch_size,
                     infer_tomograms_star=tomograms_star), **overrides}
    return _bundle("inference", None, encoder, False, dry_run, log_file, **keys) or str(Path(out) / "predictions.star")


def embed(
    table: str, checkpoint: str, out: str = "runs/embed", n_clusters: int = 10, method: str = "kmeans",
    embedding_map: str = "tsne", box: int = 32, voxel_size: float | None = None, edge: str = "report",
    encoder: str = "rb3d", batch_size: int = 16, progress: bool = True, tomograms_star: str | None = None,
    dry_run: bool = False, log_file: str | None = None, **overrides,
) -> str:
    """Cluster particles without labels: encoder features → clusters → ``<out>/clusters.star`` + PNGs.

    Runs the ``cryo_ssl`` bundle's ``embed`` run id (``configs/{common,inference,embed}.json``).

    Args:
        table: subtomogram table, or a picks table (tomogram + x, y, z, or a RELION-5 particles file;
            extracted on the fly).
        checkpoint: a pretraining (``pretrain.pt``) or fine-tuning checkpoint of the bundle, or a shipped name.
        out: output folder: ``clusters.star``/``.csv``, ``embeddings.npy``, ``embedding.png``, ``gallery.png``.
        n_clusters: number of clusters.
        method: ``kmeans`` or ``agglomerative`` (the clustering, not an SSL method).
        embedding_map: ``tsne`` or ``pca`` (``embedding.png``).
        box, voxel_size, edge: for a picks table, as in ``cryomonai extract``.
        encoder: the checkpoint's encoder (registry name).
        batch_size: particles per batch.
        progress: show a progress bar.
        tomograms_star: a RELION-5 particles file's ``tomograms.star`` (default: next to ``table``).
        dry_run: print the ``python -m monai.bundle run`` command, run nothing.
        log_file: also append cryomonai's log lines to this file (MONAI's own go to stdout).
        overrides: any other bundle key (e.g. ``device``).
    """
    from cryomonai.data.extract import EDGE_POLICIES  # lazy: torch and scikit-learn, only when run
    from cryomonai.evaluation.embedding import CLUSTER_METHODS, MAP_METHODS

    for flag, value, choices in (("edge", edge, EDGE_POLICIES), ("method", method, CLUSTER_METHODS),
                                 ("embedding_map", embedding_map, MAP_METHODS)):
        _choose(flag, value, choices)
    keys = {"output_dir": out, "infer_table": table, "checkpoint": checkpoint, "n_clusters": n_clusters,
            "cluster_method": method, "embedding_map": embedding_map, "box": box, "infer_voxel_size": voxel_size,
            "infer_edge": edge, "batch_size": batch_size, "progress": progress,
            "infer_tomograms_star": tomograms_star, **overrides}
    return _bundle("embed", None, encoder, False, dry_run, log_file, **keys) or str(Path(out) / "clusters.star")


def grid(preset: str | None = None, out: str | None = None, report: bool = True, progress: bool = False,
         max_cells: int | None = None, executor: str | None = None, log_file: str | None = None,
         status: bool = False, **overrides) -> str:
    """Run (or resume) the paper's experiment grid and write its report (``results.csv``,
    ``table.md``, PNGs) into ``out`` (default ``runs/grid_<preset>``).

    Args:
        preset: ``cpu`` (the default; the main job, 2 CPU cores, ~15 min), ``cpu_full`` (with 100 % labels, ~30 min),
            ``paper`` (Gupta et al. 2022 sizes, a GPU),
            ``real`` (a table of your own, with ``--dataset_table``) or a preset JSON path (see ``bundles/cryo_ssl/configs/grid/``).
        out: the grid folder; rerunning the same command skips the finished cells.
        report: write the report once every cell is done.
        progress: per-run progress bars, on a terminal (here and in local workers; never in SLURM jobs). The
            grid's own bar over all its runs with an ETA shows either way, or, when stderr is not a
            terminal (a SLURM log), one timestamped line per finished run: ``k/n runs, ETA hh:mm``.
        max_cells: stop after this many new cells.
        executor: who trains the runs: ``local`` (this machine: the preset's ``workers``), ``slurm`` (every
            pretraining and fine-tuning its own SLURM job, through submitit; logs in ``<out>/jobs/``) or
            ``debug`` (submitit's, in this process). With it, any key of the preset's ``executor``
            section: ``--partition gpu --account lab --gpus_per_job 1 --cpus_per_job 8 --mem_gb 32
            --time_min 240 --sbatch '{constraint: a100}' --max_jobs 64``, and ``--nodes 2
            --tasks_per_node 4`` for multi-node DDP pretraining.
        overrides: top-level preset keys, e.g. ``--repeats 2`` or ``--methods '[random,moco]'``; and
            ``--dataset_table PATH``: your particle table (STAR/CSV) as the preset's table dataset
            (``--preset real``: the paper's Table 2 protocol on your own particles).
        log_file: also append the grid's log lines to this file (e.g. ``<out>/grid.log``).
        status: run nothing; print where the grid stands (whether a driver holds it, cells evaluated, runs
            left by kind, running time left at its pace so far; :mod:`cryomonai.experiment.status`). Without
            ``--preset``, of the grid's own ``<out>/preset.json``.
    """
    from dataclasses import fields  # lazy, as every command's imports

    from cryomonai.experiment.executors import ExecutorSpec
    from cryomonai.experiment.grid import load_preset, run_grid  # lazy: MONAI, scikit-learn, matplotlib, only when run

    keys = {f.name for f in fields(ExecutorSpec)} - {"kind"}
    section = {k: overrides.pop(k) for k in list(overrides) if k in keys}
    if executor is not None:
        section["kind"] = executor
    if preset is None:  # --status of a grid folder reads the preset the grid runs with
        own = Path(out) / "preset.json" if out else None
        preset = str(own) if status and own is not None and own.is_file() else "cpu"
    spec = load_preset(preset, **overrides)
    spec.executor = {**spec.executor, **section}
    ExecutorSpec.from_dict(spec.executor)  # a one-line error before anything runs
    out = out or f"runs/grid_{Path(preset).stem}"
    if status:
        from cryomonai.experiment.grid import GridRunner
        from cryomonai.experiment.status import grid_status

        print(grid_status(GridRunner(spec, out)))
        return str(Path(out).resolve())
    with logging_to(log_file):
        run_grid(spec, out, report=report, progress=progress, max_cells=max_cells)
    return str(Path(out).resolve())


def compare(a: str, b: str, names: tuple[str, str] = ("A", "B"), baseline: str = "random", alpha: float = 0.05,
            png: str | None = None) -> None:
    """Compare two runs of one grid preset (two ``results.csv``): per cell, per arm and in the
    conclusions, as Markdown on stdout (:mod:`cryomonai.experiment.compare`). Exit status 0 when every
    conclusion agrees, 1 when any differs.

    Args:
        a: ``results.csv`` of the first run (the reference); ``selection.csv`` next to it is compared too.
        b: ``results.csv`` of the second run.
        names: how to call the two runs, e.g. ``--names '["native", "AVX2 cap"]'``.
        baseline: the arm the SSL methods are tested against.
        alpha: the t-tests' significance level.
        png: also draw both runs' accuracy against labels side by side here.
    """
    from cryomonai.experiment.compare import compare as compare_runs  # lazy: pandas, scipy, matplotlib

    text, agree = compare_runs(a, b, tuple(names), baseline, alpha, png)
    sys.stdout.write(text)
    sys.exit(0 if agree else 1)


def ship_weights(grid: str, name: str, method: str = "simclr", bundle_root: str | None = None) -> None:
    """Ship the best SSL encoder of a finished grid, chosen on validation only, and the classifier
    fine-tuned from it with the bundle (``models/shipped/``; :mod:`cryomonai.experiment.ship`).

    Args:
        grid: a finished grid's folder (``results.csv``, ``preset.json``, ``pretrain/``, ``cells/``).
        name: the shipped encoder's name; the classifier gets ``<name>_classifier``.
        method: the SSL arm to ship.
        bundle_root: the bundle to ship into (default: the installed ``cryo_ssl`` bundle).
    """
    from cryomonai.experiment.ship import ship_best  # lazy: torch

    ranking, paths = ship_best(grid, name, method, bundle_root)
    print(ranking.to_string(index=False))
    for p in paths:
        print(f"{p}: {p.stat().st_size / 1e6:.2f} MB")


COMMANDS = {"grid": grid, "demo": demo, "simulate": simulate, "simulate-tomogram": simulate_tomogram, "montage": montage,
            "extract": extract, "pretrain": pretrain, "finetune": finetune, "evaluate": evaluate, "infer": infer,
            "embed": embed, "compare": compare, "ship-weights": ship_weights}


def main() -> None:
    """Entry point of the ``cryomonai`` console script: a user error prints one line, exit status 2; a
    failed cluster job of a grid prints its run and log tail, exit status 1."""
    argv = sys.argv[1:]
    if "--" not in argv and any(a in ("-h", "--help") for a in argv):
        # fire hands a flag it does not know to a command's **overrides (grid, demo), and with other
        # flags given it would run the command first: show the command's help, run nothing
        argv = [*argv[:1], "--", "--help"] if argv[0] in COMMANDS else ["--", "--help"]
    try:
        with logging_to():  # the cryomonai logger, once: timestamped lines on stderr
            fire.Fire(COMMANDS, command=argv, name="cryomonai")
    except GridJobError as err:  # a cluster job failed: its run, its job and its log tail, no traceback of ours
        print(f"cryomonai: {err}", file=sys.stderr)
        sys.exit(1)
    except Exception as err:  # noqa: BLE001 - only our user-facing errors are caught, the rest re-raised
        user = user_error(err)
        if user is None:
            raise
        print(f"cryomonai: {user}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
