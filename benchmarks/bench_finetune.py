#!/usr/bin/env python
"""Where a fine-tuning cell's time goes, side by side in one run (the main job's shapes).

The main job (``cpu`` grid preset) spends most of its time fine-tuning ``rb3d_bn`` on 16³ subtomograms,
batch 16, with the augmented view made on the device. Stages, all in this process:

a. **bare step** — the best plain PyTorch fine-tuning step: classifier forward, cross-entropy,
   backward, Adam, on a batch already in memory; contiguous and ``channels_last_3d``, float32 and
   bf16 autocast (what :func:`cryomonai.engines.native_bf16` switches on here);
b. **views** — the bundle's fine-tuning augmentation alone (``finetune_views().batched()``: SO(3)
   rotation, wedge re-imposed, shift) on a batch: batches/s;
c. **bare step + views** — (a) in the bundle's switches with (b) before each step: the best a
   hand-written loop doing the same work reaches;
d. **bundle** — the ``finetune`` run id itself on a simulated dataset of the main job's kind:
   Ignite events time each iteration (fetch + step) and each epoch; ``epoch_overhead`` is an epoch's
   time outside its iterations (validation, checkpoints, logging). Rates in samples/s. Once with
   the bundle's defaults (``track_meta`` false: plain tensors) and with ``track_meta`` true (MONAI
   ``MetaTensor`` objects), alternated twice. The VM's speed drifts: compare within one run.

Ratios: (c)/(a) = what the views cost, (d)/(c) = what the bundle's engine costs per iteration.

Usage: ``python -m benchmarks.bench_finetune [--quick] [--out docs/records/benchmarks/bench_finetune_cpu.json]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from cryomonai.engines import native_bf16
from cryomonai.io.atomic import atomic_write
from cryomonai.networks import Classifier, build_encoder
from cryomonai.transforms import finetune_views

from benchmarks.bench_machine import machine

BOX, BATCH, CLASSES = 16, 16, 10


def _model(fmt: torch.memory_format) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    net = Classifier(build_encoder("rb3d_bn"), CLASSES).to(memory_format=fmt)
    return net, torch.optim.Adam(net.parameters(), 1e-3)


def _step(net, opt, x, y, amp: bool) -> None:
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
        out = net(x)
    loss = torch.nn.functional.cross_entropy(out.float(), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def _median_rate(seconds: list[float], batch: int) -> dict[str, float]:
    med = statistics.median(seconds)
    return {"samples_per_s": round(batch / med, 1), "ms_per_batch": round(1e3 * med, 2), "n": len(seconds)}


def bench_bare(steps: int, warmup: int, views: Any = None) -> dict[str, Any]:
    """(a), or (c) with ``views``: per-variant median step time over interleaved rounds."""
    x = torch.randn(BATCH, 1, BOX, BOX, BOX)
    y = torch.randint(0, CLASSES, (BATCH,))
    variants = {}
    for fmt_name, fmt in (("contiguous", torch.contiguous_format), ("channels_last_3d", torch.channels_last_3d)):
        for amp in (False, True):
            variants[f"{fmt_name}_{'bf16' if amp else 'fp32'}"] = (fmt, amp, *_model(fmt))
    times: dict[str, list[float]] = {k: [] for k in variants}
    for round_ in range(3):  # interleaved: drift of a shared machine hits every variant alike
        for name, (fmt, amp, net, opt) in variants.items():
            for _ in range(warmup if round_ == 0 else 0):
                _step(net, opt, (views(x)[0] if views else x).contiguous(memory_format=fmt), y, amp)
            for _ in range(steps):
                t0 = time.perf_counter()
                batch = (views(x)[0] if views else x).contiguous(memory_format=fmt)
                _step(net, opt, batch, y, amp)
                times[name].append(time.perf_counter() - t0)
    return {name: _median_rate(t, BATCH) for name, t in times.items()}


def bench_views(n: int) -> dict[str, Any]:
    views = finetune_views(pixel_size_nm=2.0).batched()
    x = torch.randn(BATCH, 1, BOX, BOX, BOX)
    for _ in range(3):
        views(x)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        views(x)
        times.append(time.perf_counter() - t0)
    return _median_rate(times, BATCH)


def bench_bundle(work: Path, epochs: int, quick: bool, **overrides: Any) -> dict[str, Any]:
    """(d): the finetune run id on a simulated set (10 classes; 100 % of a 60-per-class training split)."""
    from ignite.engine import Events

    from cryomonai.layout import RunLayout
    from cryomonai.pipeline import run_bundle
    from cryomonai.simulate.dataset import simulate_dataset

    n_per_class = 10 if quick else 100
    data = work / "data"
    if not data.exists():
        simulate_dataset(data, n_per_class=n_per_class, snr=float("inf"), box=BOX, binning=2, max_shift=2.0,
                         n_neighbours=4, seed=0, workers=None, progress=False, neighbour_gap=[0, 2], neighbour_contact="target")
    run = RunLayout(work / f"run{len(list(work.glob('run*')))}")
    clock: dict[str, Any] = {"iteration": [], "epoch": [], "fetch": []}
    marks: dict[str, float] = {}

    def attach(trainer):
        trainer.add_event_handler(Events.ITERATION_COMPLETED(once=1),
                                  lambda e: clock.__setitem__("batch_type", type(e.state.batch["image"]).__name__))
        trainer.add_event_handler(Events.GET_BATCH_STARTED, lambda _: marks.__setitem__("fetch", time.perf_counter()))
        trainer.add_event_handler(Events.GET_BATCH_COMPLETED,
                                  lambda _: clock["fetch"].append(time.perf_counter() - marks["fetch"]))
        trainer.add_event_handler(Events.ITERATION_STARTED, lambda _: marks.__setitem__("it", time.perf_counter()))
        trainer.add_event_handler(Events.ITERATION_COMPLETED,
                                  lambda _: clock["iteration"].append(time.perf_counter() - marks["it"]))
        trainer.add_event_handler(Events.EPOCH_STARTED, lambda _: marks.__setitem__("ep", time.perf_counter()))
        trainer.add_event_handler(Events.EPOCH_COMPLETED,
                                  lambda _: clock["epoch"].append(time.perf_counter() - marks["ep"]))
        return trainer

    def ready(wf):
        attach(wf.parser.get_parsed_content("train#trainer"))

    t0 = time.perf_counter()
    wf = run_bundle(
        "finetune", encoder="rb3d_bn", pretrained="", on_ready=ready, dataset_dir=str(data),
        cache_path=str(data / "cache" / "volumes.npy"), simulate=False, progress=False, batch_size=BATCH,
        num_workers=0, augment_on_device=True, label_fraction=1.0, epochs=epochs, val_interval=5, lr=1e-3,
        **run.bundle_paths(), **overrides,
    )
    total = time.perf_counter() - t0
    iters = clock["iteration"][len(clock["iteration"]) // epochs:]  # the first epoch is warm-up
    per_epoch = len(clock["iteration"]) // epochs
    epochs_t = clock["epoch"][1:]
    overhead = [e - sum(clock["iteration"][(i + 1) * per_epoch:(i + 2) * per_epoch]) for i, e in enumerate(epochs_t)]
    return {
        "iteration": _median_rate(iters, BATCH),
        "epoch_seconds": [round(e, 3) for e in clock["epoch"]],
        "iterations_per_epoch": per_epoch,
        "epoch_overhead_s_median": round(statistics.median(overhead), 3),
        "fetch_ms_median": round(1e3 * statistics.median(clock["fetch"]), 2),
        "run_seconds": round(total, 1), "setup_seconds": round(wf.seconds["setup"], 2),
        "n_train": per_epoch * BATCH, "batch_type": clock["batch_type"],
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a few tiny iterations (tests the tool)")
    ap.add_argument("--out", default=None, help="JSON output (written atomically)")
    args = ap.parse_args(argv)
    steps, warmup = (3, 1) if args.quick else (30, 5)
    t0 = time.perf_counter()
    res: dict[str, Any] = {"machine": machine(torch.device("cpu")), "threads": torch.get_num_threads(),
                           "torch": torch.__version__, "native_bf16": native_bf16("cpu"), "box": BOX, "batch": BATCH}
    res["a_bare_step"] = bench_bare(steps, warmup)
    res["b_views"] = bench_views(steps)
    res["c_bare_step_with_views"] = bench_bare(steps, warmup, finetune_views(pixel_size_nm=2.0).batched())
    with tempfile.TemporaryDirectory() as tmp:
        epochs = 2 if args.quick else 6
        for _ in range(1 if args.quick else 2):  # alternated, so that the VM's drift hits both alike
            # the bundle's defaults (track_meta false: plain tensors), then with MONAI's MetaTensor
            res.setdefault("d_bundle", []).append(bench_bundle(Path(tmp), epochs, args.quick))
            res.setdefault("d_bundle_meta", []).append(bench_bundle(Path(tmp), epochs, args.quick, track_meta=True))
    best = max(res["a_bare_step"].items(), key=lambda kv: kv[1]["samples_per_s"])
    mode = "channels_last_3d_" + ("bf16" if native_bf16("cpu") else "fp32")  # the bundle's switches here
    res["ratios"] = {
        "best_bare_variant": best[0],
        "c_over_a (views cost)": round(res["c_bare_step_with_views"][mode]["samples_per_s"]
                                       / res["a_bare_step"][mode]["samples_per_s"], 3),
        "d_over_c (bundle iteration vs bare loop with views)": round(
            statistics.median(d["iteration"]["samples_per_s"] for d in res["d_bundle"])
            / res["c_bare_step_with_views"][mode]["samples_per_s"], 3),
        "fetch_ms track_meta false / true (medians over the alternated runs)": [
            statistics.median(d["fetch_ms_median"] for d in res["d_bundle"]),
            statistics.median(d["fetch_ms_median"] for d in res["d_bundle_meta"])],
    }
    res["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(res, indent=1))
    if args.out:
        with atomic_write(args.out, "w") as fh:
            fh.write(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()
