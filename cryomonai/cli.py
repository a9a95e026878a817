"""The ``cryomonai`` command line (python-fire): ``cryomonai <command> --help``.

Commands import their modules lazily, so ``cryomonai --help`` is instant.
"""

from __future__ import annotations

import math
import sys

__all__ = ["main"]


def _snrs(snr) -> list[float]:
    """``0.05`` / ``"inf,0.05,0.03"`` / ``(inf, 0.05)`` → list of floats."""
    if isinstance(snr, str):
        return [float(s) for s in snr.replace(" ", "").split(",") if s]
    if isinstance(snr, (list, tuple)):
        return [float(s) for s in snr]
    return [float(snr)]


def simulate(
    out: str = "data_sim",
    snr="inf,0.05,0.03",
    n_per_class: int = 500,
    box: int = 32,
    seed: int = 0,
    workers: int | None = None,
    n_neighbours: int = 4,
    classes: str | None = None,
    overwrite: bool = False,
) -> list[str]:
    """Simulate labelled subtomogram datasets, one folder per SNR: ``<out>/snr_<snr>/particles.star``.

    Args:
        out: parent folder.
        snr: one SNR or a comma list (``inf`` = noise-free).
        n_per_class: subtomograms per class (paper: 500).
        box: cube size in voxels (paper: 32).
        seed: random seed (the data are a deterministic function of it).
        workers: processes (default: all cores).
        n_neighbours: crowding neighbours per subtomogram.
        classes: comma list of template ids (default: the 10 SHREC classes).
        overwrite: replace existing folders.
    """
    import time
    from pathlib import Path

    from cryomonai.simulate.dataset import simulate_dataset

    cls = tuple(classes.split(",")) if isinstance(classes, str) else classes
    tables = []
    for s in _snrs(snr):
        t0 = time.time()
        folder = Path(out) / f"snr_{'inf' if math.isinf(s) else f'{s:g}'}"
        table = simulate_dataset(folder, n_per_class, s, box, cls, seed, n_neighbours, workers=workers, overwrite=overwrite)
        n = n_per_class * len(cls or range(10))
        dt = time.time() - t0
        print(f"{table}: {n} subtomograms in {dt:.1f} s ({n / dt:.1f} subtomograms/s)", file=sys.stderr)
        tables.append(str(table))
    return tables


def simulate_tomogram(
    out: str = "data_sim/tomogram", shape="128,256,256", n_particles: int = 100, snr: float = 0.05, seed: int = 0,
    box: int = 32, overwrite: bool = False,
) -> str:
    """Simulate a whole tomogram (z,y,x = ``shape``) with particles at known coordinates (STAR)."""
    from cryomonai.simulate.tomogram import simulate_tomogram as _sim

    shp = tuple(int(v) for v in (shape.split(",") if isinstance(shape, str) else shape))
    return str(_sim(out, shp, n_particles, float(snr), box=box, seed=seed, overwrite=overwrite))


def montage(out: str = "docs/simulated_montage.png", snr="inf,0.05,0.03", box: int = 32, seed: int = 0) -> str:
    """PNG of central slices per class: clean target and the same particle at each SNR."""
    from cryomonai.simulate.preview import preview_montage

    return str(preview_montage(out, snrs=tuple(_snrs(snr)), box=box, seed=seed))


def demo(
    out: str = "runs/demo", n_per_class: int = 60, snr: float = 0.5, pretrain_epochs: int = 10,
    finetune_epochs: int = 30, label_fraction: float = 0.25, method: str = "moco", seed: int = 0,
) -> None:
    """The main job on built-in simulated data: simulate → pretrain (MoCo) → fine-tune on 25 % of
    the labels from the pretrained encoder and from random init → test accuracy of both."""
    import time

    from cryomonai.pipeline import demo as run_demo

    t0 = time.time()
    acc = run_demo(out, n_per_class, snr, pretrain_epochs, finetune_epochs, label_fraction, method, seed=seed)
    print(f"\ntest accuracy with {label_fraction:.0%} of the labels ({10 * n_per_class} simulated subtomograms, "
          f"SNR {snr:g}, {method} pretraining {pretrain_epochs} epochs, fine-tuning {finetune_epochs} epochs):")
    print(f"  pretrained encoder: {acc['pretrained']:.3f}\n  random init:        {acc['random']:.3f}")
    print(f"curves: {out}/curves.png   TensorBoard: tensorboard --logdir {out}   ({time.time() - t0:.0f} s)")


COMMANDS = {"demo": demo, "simulate": simulate, "simulate-tomogram": simulate_tomogram, "montage": montage}


def main() -> None:
    """Entry point of the ``cryomonai`` console script."""
    import fire

    fire.Fire(COMMANDS, name="cryomonai")


if __name__ == "__main__":
    main()
