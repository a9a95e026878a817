#!/usr/bin/env python
"""Throughput of cryomonai's pretraining, side by side in one run (the performance issue's tool).

Stages on the same model (``rb3d``), batch and box, with the bundle's speed switches as
``bundles/cryo_ssl/configs/common.json`` resolves them for the device (see its ``docs/README.md``):

a. **bare loop** — the best plain PyTorch MoCo loop: tensors already on the device, no MONAI or
   Ignite; one step = query encoder forward + backward on view 1, key encoder forward on view 2
   (the maths of ``cryomonai.ssl.build_method("moco", encoder)``), Adam step, momentum update, in
   the bundle's precision (fp32 on CPU, bf16 autocast on CUDA by default). Timed contiguous and
   ``torch.channels_last_3d``, plus the other precision in ``channels_last_3d`` as an extra line
   (``channels_last_3d_bf16`` on CPU), interleaved in rounds; the faster of the first two is the
   baseline. Timed in two halves, before and after (b) and (b'), pooled (``halves`` keeps each):
   a shared machine's speed drifts by several per cent within a minute.
b. **bundle** — the ``pretrain`` run id of the ``cryo_ssl`` bundle (``ConfigWorkflow`` over
   :func:`cryomonai.pipeline.bundle_configs`) on a small simulated dataset, with its real data
   pipeline, switches, handlers and checkpoints; ``pretrain_split`` is set to all rows so a small
   dataset gives more iterations per epoch. Ignite events time each iteration: the batch fetch
   (``GET_BATCH_STARTED → GET_BATCH_COMPLETED``) and the step (``ITERATION_STARTED →
   ITERATION_COMPLETED``, incl. the iteration handlers); the first iterations are warm-up.
b'. **bundle, views on the device** — (b) with ``augment_on_device`` true: the loader only
   normalises and ``SSLPrepareBatch`` makes the views from the batch inside the step.
c. **pipeline** — the bundle's data pipeline alone (``num_workers`` 0: one process): two
   ``paper_views`` per sample over ``VolumeStackDataset``, with and without MONAI's metadata
   tracking (the bundle's pretraining runs without: ``track_meta`` false).
c'. **views on the device** — ``BatchedViews`` (the batched twins of ``paper_views`` and
   ``cryo3d_views(rotation="so3")``) on a batch already on the device: view pairs/s.
d. **simulator** — ``SubtomogramSimulator`` in this process (SNR 0.05, 4 neighbours).
e. **inference** — encoder forward under ``torch.inference_mode``, contiguous and
   ``channels_last_3d``, in the bundle's precision; the top level is the bundle's format.
f. **batch sweep** — the bare loop with the bundle's switches at a few batch sizes, ascending, in
   one fresh process: samples/s, MFU, peak RSS so far and on CUDA ``max_memory_allocated`` (reset
   per size). Peak RSS is ``VmHWM`` on Linux (``getrusage``'s ``ru_maxrss`` of a fork+exec'd child
   starts at its parent's peak), else ``resource.getrusage``.

Rates are samples (subtomograms) per second from the **median** time per step/batch and, as
``best_*``, from the fastest one; ratios (b)/(a), (c)/(b) … are given for both.

FLOPs. ``step_flops`` is ``torch.utils.flop_counter.FlopCounterMode`` over one bare step (what
runs, 2 FLOPs per MAC). **MFU** counts model FLOPs the usual way: with ``F`` the forward FLOPs of
one sample through one branch (encoder + projection head, counted), a pass with backward costs
``3F`` (forward + gradients w.r.t. activations and weights, each ≈ ``F``) and a key-encoder pass
(no gradient) ``F``. MoCo v2 as the bundle runs it (``symmetric=False``) puts one view of each
sample through the query branch (fwd + bwd) and the other through the key branch (fwd only):
``4F`` per sample per step; symmetric MoCo would be ``2 × 3F + 2F = 8F``. InfoNCE logits,
optimizer and momentum update are left out (< 0.1 %). MFU = ``model FLOPs per sample × samples/s
÷ peak``. Peak: CPU — cores × clock × FLOPs/cycle, fp32 (:func:`cpu_peak`; the bf16 line is
compared with the same figure and can pass 100 %: AVX512-BF16 does twice the FLOPs); CUDA — :data:`GPU_PEAKS` by device name (dense tensor-core
bf16, TF32 — what cuDNN uses for fp32 convolutions by default — and fp32 without tensor cores),
``"unknown"`` for other devices; both in ``benchmarks/bench_machine.py``.

Usage: ``python -m benchmarks.bench_throughput [--quick] [--device cpu|cuda] [--out bench.json]``; ``--quick``
shrinks everything to test the tool; CUDA runs batch 64, sweep 16–128. Volumes ``(B, 1, D, H, W)`` (z, y, x).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.bench_machine import cpu_peak, gpu_peak, machine

#: sizes of a full CPU run, a CUDA run and ``--quick``
FULL = dict(box=32, batch=16, warmup=1, bare_rounds=4, bare_steps=2, n_per_class=8, epochs=3, bundle_warmup=1,
            pipe_batches=10, sim_n=16, infer_batch=64, infer_batches=4, sweep_batches=(8, 16), sweep_steps=3)
CUDA = dict(box=32, batch=64, warmup=3, bare_rounds=4, bare_steps=5, n_per_class=64, epochs=3, bundle_warmup=3,
            pipe_batches=10, sim_n=16, infer_batch=256, infer_batches=8, sweep_batches=(16, 32, 64, 128),
            sweep_steps=10)
QUICK = dict(box=16, batch=4, warmup=1, bare_rounds=1, bare_steps=2, n_per_class=2, epochs=2, bundle_warmup=1,
             pipe_batches=2, sim_n=2, infer_batch=8, infer_batches=2, sweep_batches=(2, 4), sweep_steps=1)
QUICK_CLASSES = ("1bxn", "1qvr", "1s3x", "1u6g")


def _rss_mib() -> float:
    """Peak resident set size of this process so far (MiB): Linux's ``VmHWM``, else ``ru_maxrss`` (KiB)."""
    status = Path("/proc/self/status")
    hwm = [ln.split()[1] for ln in status.read_text().splitlines() if ln.startswith("VmHWM:")] if status.exists() else []
    return float(hwm[0] if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024.0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rate(batch: int, seconds: Sequence[float]) -> dict[str, Any]:
    """Samples/s from the median seconds per batch (and from the fastest: a quiet-machine estimate)."""
    med = statistics.median(seconds)
    return {"samples_per_s": batch / med, "best_samples_per_s": batch / min(seconds), "median_s": med,
            "min_s": min(seconds), "n_timed": len(seconds), "times_s": [round(t, 5) for t in seconds]}


def bundle_switches(device: torch.device) -> dict[str, Any]:
    """The bundle's speed switches as ``common.json`` (+ ``pretrain.json``) resolve them for ``device``."""
    from monai.bundle import ConfigParser

    from cryomonai.pipeline import bundle_configs

    parser = ConfigParser()
    parser.read_config(bundle_configs("pretrain"))
    parser["device"] = f"$torch.device('{device}')"
    keys = ("channels_last", "amp", "compile", "num_workers", "pin_memory", "track_meta")
    sw = {k: parser.get_parsed_content(k) for k in keys}
    sw["amp_dtype"] = str(parser.get_parsed_content("amp_kwargs")["dtype"]).replace("torch.", "") if sw["amp"] else None
    return sw


def _moco(device: torch.device, memory_format: torch.memory_format) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    """MoCo v2 over rb3d with the bundle's optimizer (Adam 1e-4, weight decay 1e-4)."""
    from cryomonai.networks import build_encoder
    from cryomonai.ssl import build_method

    torch.manual_seed(0)
    method = build_method("moco", build_encoder("rb3d")).to(device, memory_format=memory_format)
    return method, torch.optim.Adam(method.parameters(), lr=1e-4, weight_decay=1e-4)


def _views(batch: int, box: int, n: int, fmt: torch.memory_format, device: torch.device) -> list[list[torch.Tensor]]:
    """``n`` pairs of random views ``(B, 1, D, H, W)``, already on ``device`` and in ``fmt``."""
    g = torch.Generator().manual_seed(0)
    return [[torch.randn(batch, 1, box, box, box, generator=g).to(device, memory_format=fmt)
             for _ in range(2)] for _ in range(n)]


def _bare_step(method: torch.nn.Module, opt: torch.optim.Optimizer, views: list[torch.Tensor], step: int,
               amp_dtype: str | None = None) -> None:
    """One plain MoCo step: query fwd+bwd (view 1), key fwd (view 2), Adam, momentum update."""
    opt.zero_grad(set_to_none=True)
    dtype = getattr(torch, amp_dtype) if amp_dtype else None
    with torch.autocast(views[0].device.type, dtype=dtype, enabled=dtype is not None):
        loss = method.training_step(views)["loss"]
    loss.backward()
    opt.step()
    method.on_train_step_end(step, step + 1)


def bench_bare_loop(device: torch.device, box: int, batch: int, warmup: int, rounds: int, steps: int,
                    amp_dtype: str | None) -> dict[str, Any]:
    """Stage (a): both memory formats in the bundle's precision (+ the other precision), interleaved."""
    cl, extra = torch.channels_last_3d, ("channels_last_3d_fp32", None) if amp_dtype else ("channels_last_3d_bf16", "bfloat16")
    variants = {"contiguous": (torch.contiguous_format, amp_dtype), "channels_last_3d": (cl, amp_dtype), extra[0]: (cl, extra[1])}
    state = {}
    for name, (fmt, dt) in variants.items():
        method, opt = _moco(device, fmt)
        data = _views(batch, box, 4, fmt, device)
        for i in range(warmup):
            _bare_step(method, opt, data[i % 4], i + 1, dt)
        state[name] = (method, opt, data, dt, [])
    for _ in range(rounds):
        for method, opt, data, dt, times in state.values():
            for _ in range(steps):
                _sync(device)
                t0 = time.perf_counter()
                _bare_step(method, opt, data[len(times) % 4], len(times) + 1, dt)
                _sync(device)
                times.append(time.perf_counter() - t0)
    out = {name: _rate(batch, s[-1]) for name, s in state.items()}
    best = max(("contiguous", "channels_last_3d"), key=lambda k: out[k]["samples_per_s"])
    return {**out, "best_format": best, "samples_per_s": out[best]["samples_per_s"], "precision": amp_dtype or "float32",
            "extra_variant": extra[0], "extra_over_channels_last": out[extra[0]]["samples_per_s"] / out["channels_last_3d"]["samples_per_s"],
            "channels_last_speedup": out["channels_last_3d"]["samples_per_s"] / out["contiguous"]["samples_per_s"]}


def merge_bare_loops(before: dict[str, Any], after: dict[str, Any], batch: int) -> dict[str, Any]:
    """Stage (a) from its two halves, timed before and after the bundle: every variant's steps pooled.

    The machine's speed drifts by several per cent over a minute (shared cores); timing the bare
    loop on both sides of the bundle makes the ratios compare like with like.
    """
    variants = ("contiguous", "channels_last_3d", before["extra_variant"])
    out = {k: _rate(batch, before[k]["times_s"] + after[k]["times_s"]) for k in variants}
    best = max(("contiguous", "channels_last_3d"), key=lambda k: out[k]["samples_per_s"])
    return {**before, **out, "best_format": best, "samples_per_s": out[best]["samples_per_s"],
            "extra_over_channels_last": out[variants[2]]["samples_per_s"] / out["channels_last_3d"]["samples_per_s"],
            "channels_last_speedup": out["channels_last_3d"]["samples_per_s"] / out["contiguous"]["samples_per_s"],
            "halves": {"before_bundle": {k: before[k]["samples_per_s"] for k in variants},
                       "after_bundle": {k: after[k]["samples_per_s"] for k in variants}}}


def step_flops(device: torch.device, box: int, batch: int, memory_format: torch.memory_format) -> dict[str, Any]:
    """Counted FLOPs of one bare MoCo step, of an encoder forward and of one branch; model FLOPs for MFU."""
    from torch.utils.flop_counter import FlopCounterMode

    method, opt = _moco(device, memory_format)
    views = _views(batch, box, 1, memory_format, device)[0]
    with FlopCounterMode(display=False) as step:
        _bare_step(method, opt, views, 1)
    with FlopCounterMode(display=False) as enc, torch.no_grad():
        method.encoder(views[0])
    with FlopCounterMode(display=False) as branch, torch.no_grad():
        method.head(method.encoder(views[0]))
    f = branch.get_total_flops() / batch
    passes = 2 if method.symmetric else 1  # query passes (fwd + bwd) = key passes (fwd) per sample
    return {"step_flops": float(step.get_total_flops()), "encoder_forward_flops": float(enc.get_total_flops()),
            "branch_forward_flops_per_sample": float(f), "model_flops_per_sample": float((3 * passes + passes) * f),
            "mfu_formula": f"model FLOPs/sample = 3F x {passes} query pass(es) (fwd+bwd) + F x {passes} key pass(es) "
                           "(fwd), F = encoder + head forward FLOPs of one sample (FlopCounterMode, 2 x MACs)"}


def _simulate(root: Path, n_per_class: int, box: int, quick: bool) -> Path:
    """A small simulated dataset (SNR 0.05) for stages (b) and (c); returns its folder."""
    from cryomonai.simulate.dataset import simulate_dataset

    classes = QUICK_CLASSES if quick else None
    simulate_dataset(root, n_per_class=n_per_class, snr=0.05, box=box, classes=classes, seed=0,
                     workers=0 if quick else None, progress=False, n_neighbours=4, neighbour_gap=[0, 2], neighbour_contact="target")
    return root


def _iteration_clock(trainer: Any) -> dict[str, list]:
    """Attach Ignite handlers recording per-iteration batch-fetch and step seconds."""
    from ignite.engine import Events

    clock: dict[str, list[float]] = {"data": [], "step": [], "epoch": [], "epoch_of": [], "_t": [0.0]}

    def mark(key: str | None) -> Callable[[Any], None]:
        def handler(_: Any) -> None:
            now = time.perf_counter()
            if key is not None:
                clock[key].append(now - clock["_t"][0])
            clock["_t"][0] = now
        return handler

    for event, key in ((Events.GET_BATCH_STARTED, None), (Events.GET_BATCH_COMPLETED, "data"), (Events.ITERATION_STARTED,
                        None), (Events.ITERATION_COMPLETED, "step")):  # ssl_iteration's float(loss) syncs CUDA
        trainer.add_event_handler(event, mark(key))
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: clock["epoch_of"].append(e.state.epoch))
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: clock["epoch"].append(e.state.times["EPOCH_COMPLETED"]))
    return clock


def bench_bundle(data_dir: Path, work: Path, batch: int, epochs: int, warmup: int, **overrides: Any) -> dict[str, Any]:
    """Stage (b): the bundle's ``pretrain`` run (its JSON switches); its ``set_determinism``'s cuDNN flags are undone."""
    from monai.bundle import ConfigWorkflow

    from cryomonai.pipeline import bundle_configs, bundle_dir

    bundle = bundle_dir()
    wf = ConfigWorkflow(
        config_file=bundle_configs("pretrain"), meta_file=str(bundle / "configs" / "metadata.json"),
        logging_file=False, workflow_type=None, run_id="pretrain", bundle_root=str(bundle),
        dataset_dir=str(data_dir), ckpt_dir=str(work / "models"), output_dir=str(work / "eval"),
        simulate=False, progress=False, epochs=epochs, batch_size=batch, pretrain_split=None, **overrides,
    )
    wf.initialize()
    trainer = wf.parser.get_parsed_content("train#trainer")
    clock, cudnn = _iteration_clock(trainer), torch.backends.cudnn
    flags, t0 = (cudnn.deterministic, cudnn.benchmark), time.perf_counter()
    wf.run()
    wall = time.perf_counter() - t0
    wf.finalize()
    ran, (cudnn.deterministic, cudnn.benchmark) = (cudnn.deterministic, cudnn.benchmark), flags  # set_determinism's
    n_iter = len(clock["step"])
    data, step = clock["data"][warmup:], clock["step"][warmup:]
    full = [d + s for d, s in zip(data, step)]
    return {
        **_rate(batch, full), "step_only": _rate(batch, step), "data_fetch": _rate(batch, data),
        "data_fraction": sum(data) / sum(full), "iterations": n_iter, "epochs": epochs, "warmup_iterations": warmup,
        "overall_samples_per_s": n_iter * batch / wall, "run_wall_s": wall, "epoch_s": clock["epoch"],
        "epoch_of_timed": clock["epoch_of"][warmup:], "overrides": {k: str(v) for k, v in overrides.items()},
        "cudnn_deterministic_benchmark": ran,
        "note": "samples_per_s = median(batch fetch + step); overall includes epoch handlers (checkpoints)",
    }


def _fetch_times(loader: Any, n_batches: int) -> tuple[list[float], dict]:
    """Seconds per batch of ``n_batches`` batches (after one warm-up batch), and the last batch."""
    times: list[float] = []
    batch: dict = {}
    while len(times) <= n_batches:
        it = iter(loader)
        while len(times) <= n_batches:
            t0 = time.perf_counter()
            try:
                batch = next(it)
            except StopIteration:
                break
            times.append(time.perf_counter() - t0)
    return times[1:], batch


def bench_pipeline(data_dir: Path, batch: int, n_batches: int, track_meta: bool) -> dict[str, Any]:
    """Stage (c): two ``paper_views`` per sample over ``VolumeStackDataset``, in this process.

    Timed with MONAI's metadata tracking on (``MetaTensor``) and off (plain tensors:
    ``cryomonai.engines.TrackMeta``, as the bundle's pretraining with ``track_meta`` false); the top
    level is the bundle's setting. Also ``cryo3d_views(rotation="so3")`` without metadata, the
    per-sample counterpart of stage (c')'s second line.
    """
    from monai.data import DataLoader

    from cryomonai.data import VolumeStackDataset
    from cryomonai.engines import TrackMeta
    from cryomonai.transforms import cryo3d_views, paper_views

    rates, views = {}, {}
    pipelines = (("with_metatensor", True, paper_views), ("without_metatensor", False, paper_views),
                 ("cryo3d_so3", False, lambda n_views: cryo3d_views(n_views, rotation="so3")))
    for name, meta, factory in pipelines:
        ds = VolumeStackDataset(data_dir / "particles.star", data_dir / "cache" / "volumes.npy",
                                transform=TrackMeta(factory(n_views=2), meta), progress=False)
        times, last = _fetch_times(DataLoader(ds, batch_size=batch, shuffle=True, drop_last=True), n_batches)
        rates[name], views[name] = _rate(batch, times), last["view_0"]
    v = views["with_metatensor" if track_meta else "without_metatensor"]
    return {**rates["with_metatensor" if track_meta else "without_metatensor"], **rates, "n_views": 2, "num_workers": 0,
            "track_meta": track_meta, "view_type": type(v).__name__, "view_dtype": str(v.dtype)}


def bench_device_views(device: torch.device, box: int, batch: int, n_batches: int, warmup: int) -> dict[str, Any]:
    """Stage (c'): two views per sample made from a whole batch on ``device`` (``BatchedViews``).

    What the bundle's ``augment_on_device`` runs in the training process (the loader then only
    normalises): the twin of ``paper_views`` (the bundle's default) at the top level, and of
    ``cryo3d_views(rotation="so3")`` (Fourier jitter, SO(3), wedge re-imposed, normalised).
    """
    from cryomonai.transforms import cryo3d_views, paper_views

    x = torch.randn(batch, 1, box, box, box, device=device)
    out: dict[str, Any] = {}
    for name, views in (("paper", paper_views().batched()), ("cryo3d_so3", cryo3d_views(rotation="so3").batched())):
        times = []
        for i in range(warmup + n_batches):
            _sync(device)
            t0 = time.perf_counter()
            views(x)
            _sync(device)
            if i >= warmup:
                times.append(time.perf_counter() - t0)
        out[name] = _rate(batch, times)
    return {**out["paper"], **out, "n_views": 2, "batch": batch}


def bench_simulator(box: int, n: int, quick: bool) -> dict[str, Any]:
    """Stage (d): subtomograms/s of ``SubtomogramSimulator`` in this process (one per call)."""
    from cryomonai.simulate.dataset import build_simulator
    from cryomonai.simulate.imaging import ImagingParams
    from cryomonai.simulate.templates import SHREC_10

    classes = QUICK_CLASSES if quick else SHREC_10
    sim = build_simulator(classes, box, 4, 8.0, ImagingParams(), neighbour_gap=[0, 2], neighbour_contact="target")
    sim(np.random.default_rng([1, 0]), 0, 0.05)  # warm-up
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        sim(np.random.default_rng([0, i]), i % len(classes), 0.05)
        times.append(time.perf_counter() - t0)
    return {**_rate(1, times), "snr": 0.05, "n_neighbours": 4, "threads": torch.get_num_threads()}


def bench_inference(device: torch.device, box: int, batch: int, n: int, sw: dict[str, Any]) -> dict[str, Any]:
    """Stage (e): encoder forward under ``torch.inference_mode``, both formats interleaved (1 warm-up)."""
    from cryomonai.networks import build_encoder

    formats = {"contiguous": torch.contiguous_format, "channels_last_3d": torch.channels_last_3d}
    dtype = getattr(torch, sw["amp_dtype"]) if sw["amp_dtype"] else None
    torch.manual_seed(0)
    x = torch.randn(batch, 1, box, box, box)
    nets = {k: (build_encoder("rb3d").eval().to(device, memory_format=f), x.to(device, memory_format=f))
            for k, f in formats.items()}
    times: dict[str, list[float]] = {k: [] for k in formats}
    with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
        for i in range(1 + n):
            for k, (enc, xk) in nets.items():
                _sync(device)
                t0 = time.perf_counter()
                enc(xk)
                _sync(device)
                if i >= 1:
                    times[k].append(time.perf_counter() - t0)
    rates = {k: _rate(batch, t) for k, t in times.items()}
    fmt = "channels_last_3d" if sw["channels_last"] else "contiguous"
    return {**rates[fmt], **rates, "format": fmt, "precision": sw["amp_dtype"] or "float32", "batch": batch,
            "channels_last_speedup": rates["channels_last_3d"]["samples_per_s"] / rates["contiguous"]["samples_per_s"]}


def sweep(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Stage (f) in this (fresh) process: the bare loop per batch size, ascending; rate and peak memory."""
    device, rows = torch.device(spec["device"]), []
    fmt = torch.channels_last_3d if spec["channels_last"] else torch.contiguous_format
    for batch in sorted(spec["batches"]):
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        method, opt = _moco(device, fmt)
        data, times = _views(batch, spec["box"], 2, fmt, device), []
        for i in range(spec["warmup"] + spec["steps"]):
            _sync(device)
            t0 = time.perf_counter()
            _bare_step(method, opt, data[i % 2], i + 1, spec["amp_dtype"])
            _sync(device)
            times.append(time.perf_counter() - t0)
        rows.append({**_rate(batch, times[spec["warmup"]:]), "batch": batch, "peak_rss_mib": _rss_mib()})
        if device.type == "cuda":
            rows[-1]["cuda_max_memory_allocated_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
            rows[-1]["cuda_max_memory_reserved_mib"] = torch.cuda.max_memory_reserved(device) / 2**20
        del method, opt, data
    return rows


def bench_sweep(device: torch.device, box: int, batches: Sequence[int], steps: int, warmup: int,
                sw: dict[str, Any]) -> list[dict[str, Any]]:
    """Stage (f): :func:`sweep` in a fresh process (so its peak memory is the sweep's own)."""
    spec = {"device": str(device), "box": box, "batches": list(batches), "steps": steps, "warmup": warmup,
            "channels_last": bool(sw["channels_last"]), "amp_dtype": sw["amp_dtype"]}
    proc = subprocess.run([sys.executable, "-m", "benchmarks.bench_throughput", "--sweep", json.dumps(spec)],
                          capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    if proc.returncode == 0 and proc.stdout.strip():
        return json.loads(proc.stdout.strip().splitlines()[-1])
    return [{"batch": b, "error": proc.stderr.strip().splitlines()[-1:]} for b in batches]  # e.g. CUDA out of memory


def _flops_summary(counts: dict[str, Any], s: dict[str, Any], peak: dict[str, Any]) -> dict[str, Any]:
    """Counted FLOP/s of the best bare loop vs peak, and MFU of the bare loop, the bundle and the sweep."""
    bare = s["bare_loop"]
    achieved = counts["step_flops"] / bare[bare["best_format"]]["median_s"]
    p, m = peak["peak_flops"], counts["model_flops_per_sample"]
    rates = {"bare": bare["samples_per_s"], "bundle": s["bundle"]["samples_per_s"],
             "bundle_step": s["bundle"]["step_only"]["samples_per_s"],
             **{f"bare_{bare['extra_variant']}": bare[bare["extra_variant"]]["samples_per_s"]}}
    for row in s["batch_sweep"]:
        if "samples_per_s" in row:
            row["mfu"] = m * row["samples_per_s"] / p if p else None
    return {**counts, "achieved_flops": achieved, "fraction_of_peak": achieved / p if p else None, "peak": peak,
            "mfu": {k: m * r / p if p else None for k, r in rates.items()},
            "model_flops_per_s": {k: m * r for k, r in rates.items()},
            "counted": "step_flops: FlopCounterMode over one whole step (query fwd+bwd, key fwd); FLOPs = 2 x MACs"}


def _ratios(s: dict[str, Any], key: str) -> dict[str, float]:
    """(b)/(a), (c)/(b) and companions from the stages' ``key`` rates (median or best)."""
    bare = s["bare_loop"][s["bare_loop"]["best_format"]][key]
    bundle, step, pipe = s["bundle"][key], s["bundle"]["step_only"][key], s["pipeline"][key]
    return {"bundle_over_bare": bundle / bare, "bundle_step_over_bare": step / bare,
            "bundle_step_over_bare_contiguous": step / s["bare_loop"]["contiguous"][key], "pipeline_over_bundle":
            pipe / bundle, "pipeline_over_bundle_step": pipe / step, "pipeline_over_bare": pipe / bare,
            "bundle_device_views_over_bare": s["bundle_device_views"][key] / bare,
            "device_views_over_bare": s["device_views"][key] / bare,
            "device_views_over_pipeline": s["device_views"][key] / pipe,
            "device_views_over_pipeline_cryo3d_so3": s["device_views"]["cryo3d_so3"][key] / s["pipeline"]["cryo3d_so3"][key]}


def run_stages(cfg: dict[str, Any], quick: bool, work: Path, device: torch.device) -> dict[str, Any]:
    """Run stages (a)–(f) with the sizes ``cfg``; returns the stages, FLOPs, switches and per-stage seconds."""
    box, batch, stages, wall, rss = cfg["box"], cfg["batch"], {}, {}, {}
    sw = bundle_switches(device)

    def timed(name: str, fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        out = fn()
        wall[name], rss[name] = time.perf_counter() - t0, _rss_mib()
        print(f"[bench] {name}: {wall[name]:.1f} s", file=sys.stderr, flush=True)
        return out

    def bare() -> dict[str, Any]:
        return bench_bare_loop(device, box, batch, cfg["warmup"], cfg["bare_rounds"], cfg["bare_steps"], sw["amp_dtype"])

    before = timed("bare_loop", bare)
    fmt = torch.channels_last_3d if before["best_format"] == "channels_last_3d" else torch.contiguous_format
    counts = timed("flop_count", lambda: step_flops(device, box, batch, fmt))
    threads = torch.get_num_threads()
    data_dir = timed("simulate_dataset", lambda: _simulate(work / "data", cfg["n_per_class"], box, quick))
    torch.set_num_threads(threads)  # simulate_dataset(workers=0) sets this process to 1 thread
    stages["bundle"] = timed("bundle", lambda: bench_bundle(
        data_dir, work, batch, cfg["epochs"], cfg["bundle_warmup"], device=f"$torch.device('{device}')"))
    stages["bundle_device_views"] = timed("bundle_device_views", lambda: bench_bundle(
        data_dir, work / "device_views", batch, cfg["epochs"], cfg["bundle_warmup"],
        device=f"$torch.device('{device}')", augment_on_device=True))
    stages["bare_loop"] = merge_bare_loops(before, timed("bare_loop_after", bare), batch)
    stages["pipeline"] = timed("pipeline", lambda: bench_pipeline(data_dir, batch, cfg["pipe_batches"], sw["track_meta"]))
    stages["device_views"] = timed("device_views", lambda: bench_device_views(
        device, box, batch, cfg["pipe_batches"], cfg["warmup"]))
    stages["simulator"] = timed("simulator", lambda: bench_simulator(box, cfg["sim_n"], quick))
    stages["inference"] = timed("inference", lambda: bench_inference(device, box, cfg["infer_batch"], cfg["infer_batches"], sw))
    stages["batch_sweep"] = timed("batch_sweep", lambda: bench_sweep(
        device, box, cfg["sweep_batches"], cfg["sweep_steps"], cfg["warmup"], sw))
    peak = gpu_peak(torch.cuda.get_device_name(device), sw["amp_dtype"]) if device.type == "cuda" else cpu_peak(os.cpu_count() or 1)
    flops = _flops_summary(counts, stages, peak)
    return {"stages": stages, "flops": flops, "bundle_switches": sw, "stage_wall_s": wall, "rss_after_stage_mib": rss}


def _table(res: dict[str, Any]) -> str:
    """The stages, ratios, sweep and MFU as a plain-text table."""
    s = res["stages"]
    b = s["bare_loop"]
    rows = [(f"a bare loop ({k})", b[k]) for k in ("contiguous", "channels_last_3d", b["extra_variant"])]
    rows += [("b bundle pretrain (fetch+step)", s["bundle"]), ("b   step only", s["bundle"]["step_only"]),
             ("b   batch fetch only", s["bundle"]["data_fetch"]), ("c pipeline (2 views/sample)", s["pipeline"]),
             ("c   with MetaTensor", s["pipeline"]["with_metatensor"]),
             ("c   without MetaTensor", s["pipeline"]["without_metatensor"]),
             ("c   cryo3d so3, without MetaTensor", s["pipeline"]["cryo3d_so3"]),
             ("b' bundle, augment_on_device", s["bundle_device_views"]),
             ("b'   step only (views made in it)", s["bundle_device_views"]["step_only"]),
             ("c' views on the device (paper)", s["device_views"]["paper"]),
             ("c'   cryo3d so3", s["device_views"]["cryo3d_so3"]), ("d simulator (1 process)", s["simulator"]),
             (f"e inference (batch {s['inference']['batch']}, contiguous)", s["inference"]["contiguous"]),
             ("e   channels_last_3d", s["inference"]["channels_last_3d"])]
    rows += [(f"f sweep batch {r['batch']}", r) for r in s["batch_sweep"] if "samples_per_s" in r]
    lines = [f"{'stage (samples/s)':36s} {'median':>9s} {'best':>9s}"]
    lines += [f"{n:36s} {v['samples_per_s']:9.2f} {v['best_samples_per_s']:9.2f}" for n, v in rows]
    r, f = res["ratios"], res["flops"]
    lines += ["", f"{'ratio':44s} {'median':>7s} {'best':>7s}"]
    lines += [f"{k:44s} {r[k]:7.3f} {res['ratios_best'][k]:7.3f}" for k in r]
    peak = f["peak"]["peak_flops"]
    lines.append(f"bare step: {f['step_flops'] / 1e9:.1f} GFLOP counted; model {f['model_flops_per_sample'] / 1e9:.2f} "
                 f"GFLOP/sample; peak {peak / 1e9 if peak else float('nan'):.0f} GFLOP/s ({f['peak']['precision']})")
    lines.append("MFU: " + ", ".join(f"{k} {100 * v:.1f} %" for k, v in f["mfu"].items() if v is not None))
    for row in s["batch_sweep"]:
        mem = row.get("cuda_max_memory_allocated_mib")
        lines.append(f"sweep batch {row['batch']}: " + (row["error"][0] if "error" in row else
                     f"peak RSS {row['peak_rss_mib']:.0f} MiB" + (f", CUDA max allocated {mem:.0f} MiB" if mem else "")))
    lines.append(f"switches {res['bundle_switches']}; peak RSS {res['peak_rss_mib']:.0f} MiB; "
                 f"{res['machine'].get('gpu') or res['machine']['cpu_model']}, torch {res['machine']['torch']}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print the table, write the JSON; returns the result dict."""
    from cryomonai.io.atomic import atomic_write

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a few tiny iterations per stage (tests the tool)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu or cuda[:i]")
    ap.add_argument("--out", default="bench.json", help="JSON output (written atomically)")
    ap.add_argument("--sweep", help=argparse.SUPPRESS)  # internal: stage (f) in a child process
    args = ap.parse_args(argv)
    if args.sweep:
        print(json.dumps(sweep(json.loads(args.sweep))))
        return {}
    device = torch.device(args.device)
    cfg = QUICK if args.quick else CUDA if device.type == "cuda" else FULL
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cryomonai_bench_") as tmp:
        res = run_stages(cfg, args.quick, Path(tmp), device)
    s = res["stages"]
    res["ratios"], res["ratios_best"] = _ratios(s, "samples_per_s"), _ratios(s, "best_samples_per_s")
    res.update(quick=args.quick, sizes=dict(cfg), encoder="rb3d", method="moco", peak_rss_mib=_rss_mib(),
               machine=machine(device), total_wall_s=time.perf_counter() - t0,
               date_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    if device.type == "cuda":
        res["cuda_max_memory_allocated_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(out, "w") as f:
        json.dump(res, f, indent=1)
    print(_table(res))
    print(f"wrote {out}")
    return res


if __name__ == "__main__":
    main()
