#!/usr/bin/env python
"""Throughput of cryomonai's pretraining, side by side in one run (the performance issue's tool).

Five stages on the same model (``rb3d``, :func:`cryomonai.networks.build_encoder`), batch and box:

a. **bare loop** — the best plain PyTorch MoCo loop: tensors already in memory, no MONAI or
   Ignite; one step = query encoder forward + backward on view 1, key encoder forward on view 2
   (the maths of ``cryomonai.ssl.build_method("moco", encoder)``), Adam step, momentum update.
   Timed in both memory formats (contiguous and ``torch.channels_last_3d``), interleaved in
   rounds; the faster is the baseline.
b. **bundle** — the ``pretrain`` run id of the ``cryo_ssl`` bundle (``ConfigWorkflow`` over
   :func:`cryomonai.pipeline.bundle_configs`) on a small simulated dataset, with its real data
   pipeline (``VolumeStackDataset`` + ``paper_views`` + ``DataLoader``, ``num_workers`` 0), its
   handlers and checkpoints; ``pretrain_split`` is set to all rows so a small dataset gives more
   iterations per epoch. Ignite events time each iteration: the batch fetch
   (``GET_BATCH_STARTED → GET_BATCH_COMPLETED``) and the step (``ITERATION_STARTED →
   ITERATION_COMPLETED``, incl. the iteration handlers); the first iterations are warm-up.
c. **pipeline** — the bundle's data pipeline alone: two ``paper_views`` per sample over
   ``VolumeStackDataset`` and a ``DataLoader`` as the bundle builds it; again with MONAI's
   metadata tracking off, to show what ``MetaTensor`` costs.
d. **simulator** — ``SubtomogramSimulator`` in this process (SNR 0.05, 4 neighbours).
e. **inference** — encoder forward under ``torch.inference_mode``, batch 64, contiguous (as the
   bundle's inference) and ``channels_last_3d``.

Rates are samples (subtomograms) per second from the **median** time per step/batch (robust on a
shared machine) and, as ``best_*``, from the fastest one (a quiet-machine estimate); the ratios
(b)/(a), (c)/(b) … are given for both. The JSON (written atomically) also holds the FLOPs of one bare step counted by
``torch.utils.flop_counter.FlopCounterMode`` (the real forward + backward count, not 3× forward),
the achieved FLOP/s, the fraction of an assumed fp32 peak (see :func:`cpu_peak`), peak RSS and
the machine. ``--quick`` shrinks everything (box 16, batch 4, a few steps) to test the tool, not
to measure.

Usage::

    .venv/bin/python tools/bench_throughput.py [--quick] [--out bench.json]

Volumes are ``(B, 1, D, H, W)`` with axes (z, y, x).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
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

#: sizes of a full run and of ``--quick``
FULL = dict(box=32, batch=16, warmup=1, bare_rounds=4, bare_steps=2, n_per_class=8, epochs=3,
            bundle_warmup=1, pipe_batches=10, sim_n=16, infer_batch=64, infer_batches=4)
QUICK = dict(box=16, batch=4, warmup=1, bare_rounds=1, bare_steps=2, n_per_class=2, epochs=2,
             bundle_warmup=1, pipe_batches=2, sim_n=2, infer_batch=8, infer_batches=2)
QUICK_CLASSES = ("1bxn", "1qvr", "1s3x", "1u6g")


def _rss_mib() -> float:
    """Peak resident set size of this process so far (MiB; Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _rate(batch: int, seconds: Sequence[float]) -> dict[str, Any]:
    """Samples/s from the median seconds per batch (and from the fastest: a quiet-machine estimate)."""
    med = statistics.median(seconds)
    return {"samples_per_s": batch / med, "best_samples_per_s": batch / min(seconds), "median_s": med,
            "min_s": min(seconds), "n_timed": len(seconds), "times_s": [round(t, 5) for t in seconds]}


def _moco(box: int, memory_format: torch.memory_format) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    """MoCo v2 over rb3d with the bundle's optimizer (Adam 1e-4, weight decay 1e-4)."""
    from cryomonai.networks import build_encoder
    from cryomonai.ssl import build_method

    torch.manual_seed(0)
    method = build_method("moco", build_encoder("rb3d")).to(memory_format=memory_format)
    return method, torch.optim.Adam(method.parameters(), lr=1e-4, weight_decay=1e-4)


def _views(batch: int, box: int, n: int, memory_format: torch.memory_format) -> list[list[torch.Tensor]]:
    """``n`` pairs of random views ``(B, 1, D, H, W)``, already in memory and in ``memory_format``."""
    g = torch.Generator().manual_seed(0)
    return [[torch.randn(batch, 1, box, box, box, generator=g).contiguous(memory_format=memory_format)
             for _ in range(2)] for _ in range(n)]


def _bare_step(method: torch.nn.Module, opt: torch.optim.Optimizer, views: list[torch.Tensor], step: int) -> None:
    """One plain MoCo step: query fwd+bwd (view 1), key fwd (view 2), Adam, momentum update."""
    opt.zero_grad(set_to_none=True)
    method.training_step(views)["loss"].backward()
    opt.step()
    method.on_train_step_end(step, step + 1)


def bench_bare_loop(box: int, batch: int, warmup: int, rounds: int, steps: int) -> dict[str, Any]:
    """Stage (a): both memory formats, interleaved in ``rounds`` of ``steps`` timed steps each."""
    formats = {"contiguous": torch.contiguous_format, "channels_last_3d": torch.channels_last_3d}
    state = {}
    for name, fmt in formats.items():
        method, opt = _moco(box, fmt)
        data = _views(batch, box, 4, fmt)
        for i in range(warmup):
            _bare_step(method, opt, data[i % 4], i + 1)
        state[name] = (method, opt, data, [])
    for _ in range(rounds):
        for name, (method, opt, data, times) in state.items():
            for _ in range(steps):
                t0 = time.perf_counter()
                _bare_step(method, opt, data[len(times) % 4], len(times) + 1)
                times.append(time.perf_counter() - t0)
    out = {name: _rate(batch, times) for name, (_, _, _, times) in state.items()}
    best = max(out, key=lambda k: out[k]["samples_per_s"])
    return {**out, "best_format": best, "samples_per_s": out[best]["samples_per_s"],
            "channels_last_speedup": out["channels_last_3d"]["samples_per_s"] / out["contiguous"]["samples_per_s"]}


def step_flops(box: int, batch: int, memory_format: torch.memory_format) -> dict[str, float]:
    """FLOPs of one bare MoCo step (forward + backward as counted) and of one encoder forward."""
    from torch.utils.flop_counter import FlopCounterMode

    method, opt = _moco(box, memory_format)
    views = _views(batch, box, 1, memory_format)[0]
    with FlopCounterMode(display=False) as step:
        _bare_step(method, opt, views, 1)
    with FlopCounterMode(display=False) as fwd, torch.no_grad():
        method.encoder(views[0])
    return {"step_flops": float(step.get_total_flops()), "encoder_forward_flops": float(fwd.get_total_flops())}


def _simulate(root: Path, n_per_class: int, box: int, quick: bool) -> Path:
    """A small simulated dataset (SNR 0.05) for stages (b) and (c); returns its folder."""
    from cryomonai.simulate.dataset import simulate_dataset

    classes = QUICK_CLASSES if quick else None
    simulate_dataset(root, n_per_class=n_per_class, snr=0.05, box=box, classes=classes, seed=0,
                     workers=0 if quick else None, progress=False)
    return root


def _iteration_clock(trainer: Any) -> dict[str, list[float]]:
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

    trainer.add_event_handler(Events.GET_BATCH_STARTED, mark(None))
    trainer.add_event_handler(Events.GET_BATCH_COMPLETED, mark("data"))
    trainer.add_event_handler(Events.ITERATION_STARTED, mark(None))
    trainer.add_event_handler(Events.ITERATION_COMPLETED, mark("step"))
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: clock["epoch_of"].append(e.state.epoch))
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: clock["epoch"].append(e.state.times["EPOCH_COMPLETED"]))
    return clock


def bench_bundle(data_dir: Path, work: Path, batch: int, epochs: int, warmup: int) -> dict[str, Any]:
    """Stage (b): the bundle's ``pretrain`` run id, iterations timed by Ignite events."""
    from monai.bundle import ConfigWorkflow

    from cryomonai.pipeline import bundle_configs, bundle_dir

    bundle = bundle_dir()
    wf = ConfigWorkflow(
        config_file=bundle_configs("pretrain"), meta_file=str(bundle / "configs" / "metadata.json"),
        logging_file=False, workflow_type=None, run_id="pretrain", bundle_root=str(bundle),
        dataset_dir=str(data_dir), ckpt_dir=str(work / "models"), output_dir=str(work / "eval"),
        simulate=False, progress=False, epochs=epochs, batch_size=batch, pretrain_split=None,
    )
    wf.initialize()
    trainer = wf.parser.get_parsed_content("train#trainer")
    clock = _iteration_clock(trainer)
    t0 = time.perf_counter()
    wf.run()
    wall = time.perf_counter() - t0
    wf.finalize()
    n_iter = len(clock["step"])
    data, step = clock["data"][warmup:], clock["step"][warmup:]
    full = [d + s for d, s in zip(data, step)]
    return {
        **_rate(batch, full),
        "step_only": _rate(batch, step),
        "data_fetch": _rate(batch, data),
        "data_fraction": sum(data) / sum(full),
        "iterations": n_iter, "epochs": epochs, "warmup_iterations": warmup,
        "overall_samples_per_s": n_iter * batch / wall,
        "run_wall_s": wall, "epoch_s": clock["epoch"], "epoch_of_timed": clock["epoch_of"][warmup:],
        "note": "samples_per_s = median(batch fetch + step); overall includes epoch handlers (checkpoints)",
    }


def _fetch_times(loader: Any, n_batches: int) -> tuple[list[float], dict]:
    """Seconds per batch of ``n_batches`` batches (after one warm-up batch), and the last batch."""
    times: list[float] = []
    batch = None
    while len(times) <= n_batches:
        it = iter(loader)
        while len(times) <= n_batches:
            t0 = time.perf_counter()
            try:
                batch = next(it)
            except StopIteration:
                break
            times.append(time.perf_counter() - t0)
    return times[1:], batch  # type: ignore[return-value]


def bench_pipeline(data_dir: Path, batch: int, n_batches: int) -> dict[str, Any]:
    """Stage (c): two ``paper_views`` per sample over ``VolumeStackDataset``, batched as the bundle does.

    Also times the same pipeline with MONAI's metadata tracking off (``set_track_meta(False)``:
    plain tensors instead of ``MetaTensor``) to show the MetaTensor overhead.
    """
    from monai.data import DataLoader, set_track_meta

    from cryomonai.data import VolumeStackDataset
    from cryomonai.transforms import paper_views

    ds = VolumeStackDataset(data_dir / "particles.star", data_dir / "cache" / "volumes.npy",
                            transform=paper_views(n_views=2), progress=False)
    loader = DataLoader(ds, batch_size=batch, shuffle=True, drop_last=True, num_workers=0)
    times, last = _fetch_times(loader, n_batches)
    set_track_meta(False)
    try:
        plain, _ = _fetch_times(loader, n_batches)
    finally:
        set_track_meta(True)
    v = last["view_0"]
    return {**_rate(batch, times), "without_metatensor": _rate(batch, plain), "n_views": 2, "num_workers": 0,
            "view_type": type(v).__name__, "view_dtype": str(v.dtype), "view_contiguous": bool(v.is_contiguous())}


def bench_simulator(box: int, n: int, quick: bool) -> dict[str, Any]:
    """Stage (d): subtomograms/s of ``SubtomogramSimulator`` in this process (one per call)."""
    from cryomonai.simulate.dataset import build_simulator
    from cryomonai.simulate.imaging import ImagingParams
    from cryomonai.simulate.templates import SHREC_10

    classes = QUICK_CLASSES if quick else SHREC_10
    sim = build_simulator(classes, box, 4, 8.0, ImagingParams())
    sim(np.random.default_rng([1, 0]), 0, 0.05)  # warm-up
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        sim(np.random.default_rng([0, i]), i % len(classes), 0.05)
        times.append(time.perf_counter() - t0)
    return {**_rate(1, times), "snr": 0.05, "n_neighbours": 4, "threads": torch.get_num_threads()}


def bench_inference(box: int, batch: int, n: int, warmup: int) -> dict[str, Any]:
    """Stage (e): encoder forward under ``torch.inference_mode``, ``batch`` subtomograms per call.

    Top level: contiguous tensors (what the bundle's inference feeds); ``channels_last_3d`` is
    timed interleaved with it, for comparison.
    """
    from cryomonai.networks import build_encoder

    formats = {"contiguous": torch.contiguous_format, "channels_last_3d": torch.channels_last_3d}
    torch.manual_seed(0)
    x = torch.randn(batch, 1, box, box, box)
    nets = {k: (build_encoder("rb3d").eval().to(memory_format=f), x.contiguous(memory_format=f))
            for k, f in formats.items()}
    times: dict[str, list[float]] = {k: [] for k in formats}
    with torch.inference_mode():
        for i in range(warmup + n):
            for k, (enc, xk) in nets.items():
                t0 = time.perf_counter()
                enc(xk)
                if i >= warmup:
                    times[k].append(time.perf_counter() - t0)
    cl = _rate(batch, times["channels_last_3d"])
    out = _rate(batch, times["contiguous"])
    return {**out, "channels_last_3d": cl, "channels_last_speedup": cl["samples_per_s"] / out["samples_per_s"],
            "batch": batch, "format": "contiguous"}


def _lscpu() -> dict[str, str]:
    """``lscpu`` as a dict (empty if unavailable)."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return {}
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in text.splitlines()) if v}


def _clock_ghz(info: dict[str, str]) -> tuple[float | None, str]:
    """Core clock (GHz) and where it came from: lscpu's max MHz, else /proc/cpuinfo's cpu MHz."""
    if info.get("CPU max MHz"):
        return float(info["CPU max MHz"]) / 1000.0, "lscpu 'CPU max MHz'"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("cpu MHz"):
                return float(line.split(":")[1]) / 1000.0, "/proc/cpuinfo 'cpu MHz' (nominal; turbo not known)"
    except OSError:
        pass
    return None, "unknown"


def cpu_peak(cores: int) -> dict[str, Any]:
    """Assumed fp32 peak = cores × clock × FLOPs/cycle, with the assumption stated.

    FLOPs/cycle per core (fp32, FMA = 2 FLOPs): AVX-512 with two 512-bit FMA units (Xeon) 64;
    AMD family 25 (Zen 3/4: Zen 4 runs AVX-512 on two 256-bit FMA pipes) 32; AVX2 + FMA 32;
    otherwise 16 (SSE). ``generic_avx512_peak`` is the 64-FLOPs/cycle figure for comparison.
    """
    info = _lscpu()
    flags = set(info.get("Flags", "").split())
    ghz, clock_src = _clock_ghz(info)
    amd = "AMD" in info.get("Vendor ID", "") and info.get("CPU family") in {"25", "26"}
    if "avx512f" in flags and not amd:
        fpc, why = 64, "AVX-512, two 512-bit FMA units: 2 x 16 lanes x 2 FLOPs"
    elif "avx512f" in flags or {"avx2", "fma"} <= flags:
        fpc, why = 32, ("AMD Zen (family 25): AVX-512 executed on two 256-bit FMA pipes" if amd
                        else "AVX2, two 256-bit FMA units") + ": 2 x 8 lanes x 2 FLOPs"
    else:
        fpc, why = 16, "SSE, no FMA assumed"
    peak = cores * ghz * 1e9 * fpc if ghz else None
    return {"cores": cores, "clock_ghz": ghz, "clock_source": clock_src, "flops_per_cycle": fpc,
            "assumption": why, "peak_flops": peak,
            "generic_avx512_peak_flops": cores * ghz * 1e9 * 64 if ghz else None}


def machine() -> dict[str, Any]:
    """Where the numbers come from."""
    info = _lscpu()
    return {"platform": platform.platform(), "python": platform.python_version(), "machine": platform.machine(),
            "cpu_model": info.get("Model name", platform.processor()), "cpu_family": info.get("CPU family"),
            "cpu_model_id": info.get("Model"), "cpus": os.cpu_count(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "torch_interop_threads": torch.get_num_interop_threads(),
            "mkldnn": torch.backends.mkldnn.is_available(), "shared_machine_note": "timings are medians"}


def _table(res: dict[str, Any]) -> str:
    """The stages and ratios as a plain-text table."""
    s = res["stages"]
    rows = [
        ("a bare loop (contiguous)", s["bare_loop"]["contiguous"]),
        ("a bare loop (channels_last_3d)", s["bare_loop"]["channels_last_3d"]),
        ("b bundle pretrain (fetch+step)", s["bundle"]),
        ("b   step only", s["bundle"]["step_only"]),
        ("b   batch fetch only", s["bundle"]["data_fetch"]),
        ("c pipeline (2 views/sample)", s["pipeline"]),
        ("c   without MetaTensor", s["pipeline"]["without_metatensor"]),
        ("d simulator (1 process)", s["simulator"]),
        (f"e inference (batch {s['inference']['batch']}, contiguous)", s["inference"]),
        ("e   channels_last_3d", s["inference"]["channels_last_3d"]),
    ]
    lines = [f"{'stage (samples/s)':36s} {'median':>9s} {'best':>9s}"]
    lines += [f"{n:36s} {v['samples_per_s']:9.2f} {v['best_samples_per_s']:9.2f}" for n, v in rows]
    lines.append(f"{'b   overall (run wall, all iterations)':36s} {s['bundle']['overall_samples_per_s']:9.2f}")
    r, f = res["ratios"], res["flops"]
    lines += ["", f"{'ratio':44s} {'median':>7s} {'best':>7s}"]
    lines += [f"{k:44s} {r[k]:7.3f} {res['ratios_best'][k]:7.3f}" for k in r]
    lines += [
              f"bare step: {f['step_flops'] / 1e9:.1f} GFLOP, {f['achieved_flops'] / 1e9:.1f} GFLOP/s"
              + (f" = {100 * f['fraction_of_peak']:.1f} % of assumed peak {f['peak']['peak_flops'] / 1e9:.0f} GFLOP/s"
                 if f["fraction_of_peak"] is not None else ""),
              f"peak RSS {res['peak_rss_mib']:.0f} MiB; {res['machine']['cpu_model']}, torch {res['machine']['torch']},"
              f" {res['machine']['torch_threads']} threads"]
    return "\n".join(lines)


def _flops_summary(counts: dict[str, float], bare: dict[str, Any], batch: int, peak: dict[str, Any]) -> dict[str, Any]:
    """Achieved FLOP/s of the best bare loop and its fraction of the assumed peak."""
    achieved = counts["step_flops"] / bare[bare["best_format"]]["median_s"]
    return {**counts, "per_sample_step_flops": counts["step_flops"] / batch, "achieved_flops": achieved,
            "fraction_of_peak": achieved / peak["peak_flops"] if peak["peak_flops"] else None, "peak": peak,
            "counted": "FlopCounterMode over one whole step (query fwd+bwd, key fwd); FLOPs = 2 x MACs"}


def _ratios(s: dict[str, Any], key: str) -> dict[str, float]:
    """(b)/(a), (c)/(b) and companions from the stages' ``key`` rates (median or best)."""
    bare = s["bare_loop"][s["bare_loop"]["best_format"]][key]
    bundle, step, pipe = s["bundle"][key], s["bundle"]["step_only"][key], s["pipeline"][key]
    return {"bundle_over_bare": bundle / bare, "bundle_step_over_bare": step / bare,
            "bundle_step_over_bare_contiguous": step / s["bare_loop"]["contiguous"][key],
            "pipeline_over_bundle": pipe / bundle, "pipeline_over_bundle_step": pipe / step,
            "pipeline_over_bare": pipe / bare}


def run_stages(cfg: dict[str, Any], quick: bool, work: Path) -> dict[str, Any]:
    """Run stages (a)–(e) with the sizes ``cfg``; returns the stages, FLOPs and per-stage seconds."""
    box, batch, stages, wall, rss = cfg["box"], cfg["batch"], {}, {}, {}

    def timed(name: str, fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        out = fn()
        wall[name], rss[name] = time.perf_counter() - t0, _rss_mib()
        print(f"[bench] {name}: {wall[name]:.1f} s", file=sys.stderr, flush=True)
        return out

    stages["bare_loop"] = timed("bare_loop", lambda: bench_bare_loop(
        box, batch, cfg["warmup"], cfg["bare_rounds"], cfg["bare_steps"]))
    best = stages["bare_loop"]["best_format"]
    fmt = torch.channels_last_3d if best == "channels_last_3d" else torch.contiguous_format
    counts = timed("flop_count", lambda: step_flops(box, batch, fmt))
    threads = torch.get_num_threads()
    data_dir = timed("simulate_dataset", lambda: _simulate(work / "data", cfg["n_per_class"], box, quick))
    torch.set_num_threads(threads)  # simulate_dataset(workers=0) sets this process to 1 thread
    stages["bundle"] = timed("bundle", lambda: bench_bundle(data_dir, work, batch, cfg["epochs"], cfg["bundle_warmup"]))
    stages["pipeline"] = timed("pipeline", lambda: bench_pipeline(data_dir, batch, cfg["pipe_batches"]))
    stages["simulator"] = timed("simulator", lambda: bench_simulator(box, cfg["sim_n"], quick))
    stages["inference"] = timed("inference", lambda: bench_inference(box, cfg["infer_batch"], cfg["infer_batches"], 1))
    flops = _flops_summary(counts, stages["bare_loop"], batch, cpu_peak(os.cpu_count() or 1))
    return {"stages": stages, "flops": flops, "stage_wall_s": wall, "rss_after_stage_mib": rss}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print the table, write the JSON; returns the result dict."""
    from cryomonai.io.atomic import atomic_write

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a few tiny iterations per stage (tests the tool)")
    ap.add_argument("--out", default="bench.json", help="JSON output (written atomically)")
    args = ap.parse_args(argv)
    cfg = QUICK if args.quick else FULL
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cryomonai_bench_") as tmp:
        res = run_stages(cfg, args.quick, Path(tmp))
    s = res["stages"]
    res["ratios"], res["ratios_best"] = _ratios(s, "samples_per_s"), _ratios(s, "best_samples_per_s")
    res.update(quick=args.quick, sizes=dict(cfg), encoder="rb3d", method="moco", peak_rss_mib=_rss_mib(),
               machine=machine(), total_wall_s=time.perf_counter() - t0,
               date_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(out, "w") as f:
        json.dump(res, f, indent=1)
    print(_table(res))
    print(f"wrote {out}")
    return res


if __name__ == "__main__":
    main()
