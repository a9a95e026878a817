"""Write a simulated, labelled subtomogram dataset in the particle-table format.

Layout of ``out_dir`` (written to ``<out_dir>.partial`` and renamed at the end, so an interrupted
run never leaves a half-written dataset behind)::

    subtomograms/000000.mrc ...   observed subtomograms (float32, voxel size in the header)
    subtomograms/000000_context.mrc ...  with ``context=True``: the same boxes without their target
                                  (same neighbours and noise; table column ``cryoContextPath``)
    particles.star                RELION-style table (+ data_classes block with the names)
    particles.csv                 the same table as CSV: path,label,split,...
    clean.npy                     (n, box, box, box) float16: each target's clean density box
    simulation.json               every parameter, class names, seed, package version

Each particle ``i`` draws from its own generator ``np.random.default_rng([seed, i])``, so the data
are identical whatever the number of worker processes. Classes cycle (``i % n_classes``) so any
prefix is balanced; splits are stratified (60/20/20 by default, the paper's simulated split).

Crowding defaults to 0–4 neighbours per box, each 0–8 voxels beyond contact with a sphere of the
largest template's radius around the target, so the neighbours do not reveal the target's size
(:data:`~cryomonai.simulate.subtomogram.N_NEIGHBOURS`, :data:`~cryomonai.simulate.subtomogram.NEIGHBOUR_GAP`);
``n_neighbours=4, neighbour_gap=(0, 2), neighbour_contact="target"`` is the old "touching shell",
whose neighbours do (see :mod:`cryomonai.simulate.subtomogram`). ``context=True`` writes the context
control next to each subtomogram.

Example (tiny):
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp()) / "sim"
    >>> table = simulate_dataset(d, n_per_class=1, classes=("3qm1", "1s3x"), box=16, workers=0, progress=False)
    >>> table.name, len(list((d / "subtomograms").glob("*.mrc")))
    ('particles.star', 2)
"""

from __future__ import annotations

import dataclasses
import json
import math
import multiprocessing as mp
import os
import shutil
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from cryomonai import __version__
from cryomonai.data.extract import fourier_resize
from cryomonai.data.splits import stratified_split
from cryomonai.errors import ConfigError, CryoDataError
from cryomonai.io.atomic import atomic_write
from cryomonai.io.mrc import write_mrc
from cryomonai.io.table import write_particle_table
from cryomonai.simulate.imaging import ImagingParams
from cryomonai.simulate.subtomogram import (
    N_NEIGHBOURS,
    NEIGHBOUR_CONTACTS,
    NEIGHBOUR_GAP,
    SubtomogramSimulator,
    box_and_target_snr,
    gap_range,
    neighbour_range,
)
from cryomonai.simulate.templates import SHREC_10, load_templates, template_radius

__all__ = ["simulate_dataset", "build_simulator"]

_WORKER: dict = {}


def build_simulator(
    classes, box: int, n_neighbours: int | Sequence[int], max_shift: float, imaging: ImagingParams,
    neighbour_gap: float | Sequence[float] = NEIGHBOUR_GAP, neighbour_contact: str = "largest",
) -> SubtomogramSimulator:
    """A :class:`SubtomogramSimulator` over the packaged templates ``classes`` (in that order)."""
    temps = load_templates(list(classes))
    stack = torch.stack([torch.from_numpy(temps[c]) for c in classes])
    radii = np.array([template_radius(temps[c]) for c in classes])
    return SubtomogramSimulator(stack, radii, box=box, n_neighbours=n_neighbours, max_shift=max_shift, imaging=imaging,
                                neighbour_gap=neighbour_gap, neighbour_contact=neighbour_contact)


def _init_worker(cfg: dict, own_process: bool = True) -> None:
    """Build the simulator; a pool worker (``own_process``) uses one thread, the caller keeps its own."""
    if own_process:
        torch.set_num_threads(1)
    _WORKER["sim"] = build_simulator(**cfg["sim"])
    _WORKER.update({k: v for k, v in cfg.items() if k != "sim"})


def _simulate_chunk(indices: list[int]) -> list[tuple[dict, np.ndarray]]:
    """Simulate and write particles ``indices``; returns (record, clean float16 box) per particle."""
    sim, seed, snr, n_cls = _WORKER["sim"], _WORKER["seed"], _WORKER["snr"], _WORKER["n_classes"]
    binning, context = _WORKER.get("binning", 1), _WORKER.get("context", False)
    out = []
    for i in indices:
        p = sim(np.random.default_rng([seed, i]), target=i % n_cls, snr=snr, context=context)
        if binning > 1:
            p = _bin(p, binning)
        rel = f"subtomograms/{i:06d}.mrc"
        write_mrc(Path(_WORKER["root"]) / rel, p["observed"], voxel_size=_WORKER["voxel_size"])
        rot, tilt, psi = p["euler"]
        rec = {
            "path": rel,
            "label_index": p["label"],
            "rlnAngleRot": rot,
            "rlnAngleTilt": tilt,
            "rlnAnglePsi": psi,
            "cryoShiftX": p["shift"][0],
            "cryoShiftY": p["shift"][1],
            "cryoShiftZ": p["shift"][2],
            "cryoSNR": p["snr"],
            "cryoSNRBox": p["snr_box"],
            "cryoSNRTarget": p["snr_target"],
            "cryoNeighbours": p["n_neighbours"],
        }
        if context:  # relative to the table's folder, like the rename-proof dataset itself
            rec["cryoContextPath"] = f"subtomograms/{i:06d}_context.mrc"
            write_mrc(Path(_WORKER["root"]) / rec["cryoContextPath"], p["context"], voxel_size=_WORKER["voxel_size"])
        out.append((rec, p["clean"].astype(np.float16)))
    return out


def _bin(particle: dict, binning: int) -> dict:
    """Fourier-bin the volumes by ``binning``, scale ``shift`` to the binned voxels and measure the
    binned SNRs (binning removes the noise above the new Nyquist)."""
    size = (particle["observed"].shape[-1] // binning,) * 3
    out = dict(particle)
    for key in ("observed", "clean", "signal", "target_signal") + (("context",) if "context" in particle else ()):
        out[key] = np.asarray(fourier_resize(particle[key], size), dtype=np.float32)
    out["shift"] = np.asarray(particle["shift"]) / binning
    out["snr_box"], out["snr_target"] = box_and_target_snr(out["observed"], out["signal"], out["target_signal"])
    return out


def _run(indices: list[int], cfg: dict, workers: int, progress: bool) -> list[tuple[dict, np.ndarray]]:
    chunks = [indices[i : i + 32] for i in range(0, len(indices), 32)]
    bar = tqdm(total=len(indices), desc=f"simulate SNR={cfg['snr']}", unit="subtomo", disable=not progress)
    results = []
    if workers <= 0:
        _init_worker(cfg, own_process=False)
        for c in chunks:
            results += _simulate_chunk(c)
            bar.update(len(c))
    else:
        # a process pool that fails loudly (BrokenProcessPool) if a worker dies, instead of hanging
        try:
            with ProcessPoolExecutor(workers, mp.get_context("spawn"), _init_worker, (cfg,)) as pool:
                for r in pool.map(_simulate_chunk, chunks):
                    results += r
                    bar.update(len(r))
        except BrokenProcessPool:
            bar.close()
            raise ConfigError(f"simulate_dataset(workers={workers})", "a simulation worker process died (nothing was written)",
                              "in a script, call it under `if __name__ == \"__main__\":` (the workers are spawned and "
                              "import the script again), or pass workers=0; if memory ran out, use fewer workers") from None
    bar.close()
    return results


def simulate_dataset(
    out_dir: str | os.PathLike,
    n_per_class: int = 500,
    snr: float = 0.05,
    box: int = 32,
    classes: tuple[str, ...] | None = None,
    seed: int = 0,
    n_neighbours: int | Sequence[int] = N_NEIGHBOURS,
    max_shift: float = 8.0,
    imaging: ImagingParams | dict | None = None,
    split_fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
    workers: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    binning: int = 1,
    noise_model: str | None = None,
    neighbour_gap: float | Sequence[float] = NEIGHBOUR_GAP,
    neighbour_contact: str = "largest",
    context: bool = False,
) -> Path:
    """Simulate ``n_per_class × len(classes)`` subtomograms at ``snr`` and write the dataset.

    Args:
        out_dir: the dataset folder (must not exist unless ``overwrite``).
        n_per_class: subtomograms per class (the paper: 500).
        snr: signal variance / noise variance (``inf`` for noise-free; the paper: inf, 0.05, 0.03).
        box: cube size in voxels (the paper: 32 simulated, 28 real).
        classes: template ids (default the 10 SHREC classes, :data:`templates.SHREC_10`).
        seed: the dataset is a deterministic function of the seed and the parameters.
        n_neighbours, max_shift: crowding and target displacement (voxels); ``n_neighbours=[lo, hi]``
            draws the crowding per subtomogram from ``lo..hi`` (default 0–4; the table's
            ``cryoNeighbours`` says how many were placed); an integer fixes it.
        imaging: :class:`ImagingParams` or a dict of its fields (CTF, wedge, band-pass).
        split_fractions: stratified train/val/test fractions written to the table's ``split``.
        workers: processes (default: all cores; 0 = in this process).
        overwrite: replace an existing ``out_dir``.
        progress: show a progress bar.
        binning: simulate at ``box × binning`` voxels of 10 Å, then Fourier-bin each subtomogram
            (and its clean target) to ``box`` voxels of ``10 × binning`` Å — the usual bin-2/bin-4
            step of a cryo-ET workflow, and 8× less compute per sample at bin 2 (``box=16,
            binning=2`` shows the whole 32³ field of view). ``max_shift`` and ``snr`` refer to the
            unbinned simulation (binning removes the noise above the new Nyquist, so the binned
            subtomograms have a higher SNR; the table's ``cryoSNRBox`` is measured after binning).
        noise_model: ``"split"``, ``"filtered"`` or ``"aitom"`` (:attr:`ImagingParams.noise_model`;
            with ``"aitom"``, ``snr`` is AITom's nominal SNR, not the box's); ``None`` keeps the
            imaging parameters' own (default ``"split"``).
        neighbour_gap: ``[lo, hi]`` voxels: each neighbour's extra distance beyond contact, drawn
            per neighbour (default 0–8).
        neighbour_contact: contact with a sphere of the ``"largest"`` template's radius around the
            target (default; the neighbours' places do not depend on its class) or of the
            ``"target"``'s own. ``n_neighbours=4, neighbour_gap=[0, 2], neighbour_contact="target"``
            is the touching shell, the default before issue 26.
        context: also write each box without its target (same neighbours, filters and noise) as
            ``subtomograms/<i>_context.mrc``, named in the table's ``cryoContextPath`` (relative to
            the table's folder): the context control.

    The table records per particle the requested ``cryoSNR`` and the measured ``cryoSNRBox``
    (var(noise-free imaged box) / var(noise)) and ``cryoSNRTarget`` (var(imaged target alone) /
    var(noise)); ``inf`` without noise.

    Returns:
        Path of ``particles.star``.
    """
    out = Path(out_dir).resolve()
    if out.exists() and not overwrite:
        raise ConfigError(out, "output folder already exists", "choose another folder or pass overwrite=True")
    classes = tuple(classes or SHREC_10)
    lo, hi = neighbour_range(n_neighbours)  # a bad value fails here, before any folder is made
    n_neighbours = lo if lo == hi else [lo, hi]
    neighbour_gap = list(gap_range(neighbour_gap))
    if neighbour_contact not in NEIGHBOUR_CONTACTS:
        raise ConfigError("simulate_dataset", f"neighbour_contact={neighbour_contact!r}",
                          f"use one of {list(NEIGHBOUR_CONTACTS)}")
    imaging = _imaging_params(imaging, noise_model)
    snr = float(snr)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        (tmp / "subtomograms").mkdir(parents=True)
    except OSError as err:
        raise CryoDataError(tmp, f"cannot create the output folder ({err.strerror or err})", "choose a writable folder")
    if int(binning) != binning or binning < 1:
        raise ConfigError("simulate_dataset", f"binning={binning} is not a positive integer", "use 1, 2 or 4")
    binning = int(binning)
    sim_cfg = dict(classes=classes, box=box * binning, n_neighbours=n_neighbours, max_shift=max_shift, imaging=imaging,
                   neighbour_gap=neighbour_gap, neighbour_contact=neighbour_contact)
    cfg = dict(sim=sim_cfg, seed=seed, snr=snr, n_classes=len(classes), root=str(tmp),
               voxel_size=imaging.pixel_size_nm * 10 * binning, binning=binning, context=bool(context))
    n = n_per_class * len(classes)
    workers = (os.cpu_count() or 1) if workers is None else workers
    results = _run(list(range(n)), cfg, min(workers, max(1, n // 32)) if workers else 0, progress)

    df = pd.DataFrame([r for r, _ in results])
    df.insert(1, "label", [classes[i] for i in df["label_index"]])
    df.insert(3, "split", stratified_split(df["label_index"].to_numpy(), split_fractions, seed=seed))
    df["rlnPixelSize"] = cfg["voxel_size"]
    df["path"] = [str(tmp / p) for p in df["path"]]
    with atomic_write(tmp / "clean.npy") as f:
        np.save(f, np.stack([c for _, c in results]))
    write_particle_table(df, tmp / "particles.star", list(classes))
    write_particle_table(df, tmp / "particles.csv", list(classes))
    meta = {
        "n_per_class": n_per_class, "snr": snr if math.isfinite(snr) else "inf", "box": box, "binning": binning, "classes": list(classes),
        "seed": seed, "n_neighbours": n_neighbours, "neighbour_gap": neighbour_gap,
        "neighbour_contact": neighbour_contact, "context": bool(context),
        "max_shift": max_shift, "noise_model": imaging.noise_model,
        "split_fractions": list(split_fractions),
        "imaging": dataclasses.asdict(imaging), "voxel_size_A": cfg["voxel_size"], "cryomonai": __version__,
    }
    (tmp / "simulation.json").write_text(json.dumps(meta, indent=2))
    old = out.with_name(out.name + ".old")
    if out.exists():  # keep the previous dataset until the new one is in place
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)
    return out / "particles.star"


def _imaging_params(imaging: ImagingParams | dict | None, noise_model: str | None) -> ImagingParams:
    """``imaging`` as :class:`ImagingParams`, with ``noise_model`` (if given) set in it."""
    if not isinstance(imaging, ImagingParams):
        try:
            imaging = ImagingParams(**(imaging or {}))
        except TypeError as err:
            fields = [f.name for f in dataclasses.fields(ImagingParams)]
            raise ConfigError("simulate_dataset(imaging=...)", str(err),
                              f"use fields of ImagingParams: {fields}") from None
    if noise_model is None or noise_model == imaging.noise_model:
        return imaging
    if imaging.noise_model != ImagingParams.noise_model:
        raise ConfigError("simulate_dataset", f"noise_model={noise_model!r} but imaging has {imaging.noise_model!r}",
                          "give the noise model once")
    return dataclasses.replace(imaging, noise_model=noise_model)
