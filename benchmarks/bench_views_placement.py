"""Where should the views be made: in a data-loader process or in the training step?

Runs the bundle's ``pretrain`` (SimCLR, SO(3) ``cryo3d_views``) and ``finetune`` (augmented,
``finetune_views``) run ids side by side on the same small simulated dataset (the ``cpu`` grid
preset's kind: 16³, binned 2×), once with the views made per sample by the data loader
(``augment_on_device: false``, the bundle's ``num_workers``) and once made from the whole batch inside
the training step (``augment_on_device: true``, ``num_workers: 0``), each timed end to end
(``run_bundle``, set-up included), the two placements alternated ``--rounds`` times, and prints
the median seconds and the ratio. The grid presets follow what it measures.

    python -m benchmarks.bench_views_placement --out docs/records/benchmarks/bench_views_placement.json
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

import fire

from benchmarks.bench_machine import machine


def _run(run_id: str, data: Path, work: Path, on_device: bool, epochs: int) -> float:
    import shutil

    from cryomonai.pipeline import run_bundle

    shutil.rmtree(work, ignore_errors=True)
    keys = dict(dataset_dir=str(data), cache_path=str(data / "cache" / "volumes.npy"), ckpt_dir=str(work / "models"),
                output_dir=str(work / "eval"), epochs=epochs, progress=False, lr=0.001)
    keys.update({"augment_on_device": True, "num_workers": 0} if on_device else {})
    t0 = time.perf_counter()
    if run_id == "pretrain":
        views = {"_target_": "cryomonai.transforms.cryo3d_views", "n_views": "$@ssl_method.n_views", "rotation": "so3",
                 "pixel_size_nm": 2.0}
        run_bundle("pretrain", "simclr", "rb3d", batch_size=64, **{"train#transforms": views}, **keys)
    else:
        run_bundle("finetune", encoder="rb3d", pretrained="", batch_size=16, label_fraction=1.0, **keys)
    return time.perf_counter() - t0


def main(out: str = "", rounds: int = 2, epochs: int = 3, n_per_class: int = 100) -> dict:
    """Time both run ids with loader views and with device views; write ``out`` (JSON) if given."""
    import torch

    from cryomonai.simulate.dataset import simulate_dataset

    root = Path(tempfile.mkdtemp(prefix="bench_views_"))
    data = root / "data"
    simulate_dataset(data, n_per_class=n_per_class, box=16, binning=2, max_shift=2.0, snr=float("inf"), progress=False)
    result = {"machine": machine(torch.device("cpu")), "torch": torch.__version__, "threads": torch.get_num_threads(), "epochs": epochs,
              "subtomograms": 10 * n_per_class}
    for run_id in ("pretrain", "finetune"):
        times = {"loader": [], "device": []}
        for _ in range(rounds):
            for place in times:
                times[place].append(_run(run_id, data, root / "work", place == "device", epochs))
        med = {k: statistics.median(v) for k, v in times.items()}
        result[run_id] = {"seconds": times, "median_seconds": med, "loader_over_device": med["loader"] / med["device"]}
        print(f"{run_id}: loader views {med['loader']:.1f} s, device views {med['device']:.1f} s "
              f"-> device is {med['loader'] / med['device']:.2f}x faster ({epochs} epochs, set-up included)", flush=True)
    if out:
        Path(out).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    fire.Fire(main)
