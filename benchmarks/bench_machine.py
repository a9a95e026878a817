"""Peak FLOP/s and a description of the machine, for ``benchmarks/bench_throughput.py`` (MFU).

* CPU — :func:`cpu_peak`: cores × clock × fp32 FLOPs per cycle from ``lscpu``'s flags, with the
  assumption stated (there is no bf16 figure: a CPU bf16 run is compared with the fp32 peak);
* CUDA — :func:`gpu_peak`: dense datasheet peaks from :data:`GPU_PEAKS` by device name (H100 SXM,
  H200, A100), for the precision the convolutions run in: bf16 under autocast, TF32 for fp32
  convolutions while ``torch.backends.cudnn.allow_tf32`` (PyTorch's default), else fp32 without
  tensor cores; ``"unknown"`` (peak None) for any other device.
"""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import torch

__all__ = ["GPU_PEAKS", "cpu_peak", "gpu_peak", "machine"]

#: dense peak FLOP/s by GPU (name substring, excluded substrings): bf16 tensor, TF32 tensor, fp32 (no tensor cores)
GPU_PEAKS = [
    ("H200", ("NVL",), {"bf16": 989e12, "tf32": 494.7e12, "fp32": 67e12, "model": "H200 SXM (= H100 SXM)"}),
    ("H100", ("PCIE", "NVL"), {"bf16": 989e12, "tf32": 494.7e12, "fp32": 67e12, "model": "H100 SXM"}),
    ("A100", (), {"bf16": 312e12, "tf32": 156e12, "fp32": 19.5e12, "model": "A100"}),
]


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
    return {"cores": cores, "clock_ghz": ghz, "clock_source": clock_src, "flops_per_cycle": fpc, "precision": "fp32",
            "assumption": why, "peak_flops": peak, "generic_avx512_peak_flops": cores * ghz * 1e9 * 64 if ghz else None}


def gpu_peak(name: str, amp_dtype: str | None) -> dict[str, Any]:
    """Dense peak FLOP/s of GPU ``name`` (:data:`GPU_PEAKS`) for the precision the convolutions run in."""
    precision = "bf16" if amp_dtype else ("tf32" if torch.backends.cudnn.allow_tf32 else "fp32")
    for key, excluded, peaks in GPU_PEAKS:
        if key in name.upper() and not any(x in name.upper() for x in excluded):
            return {"device_name": name, "model": peaks["model"], "precision": precision, "peak_flops": peaks[precision],
                    "all_peaks_flops": {k: v for k, v in peaks.items() if k != "model"},
                    "assumption": "dense (no sparsity) datasheet peak; fp32 convolutions use TF32 under "
                                  "torch.backends.cudnn.allow_tf32 (on by default)"}
    return {"device_name": name, "model": "unknown", "precision": precision, "peak_flops": None}


def machine(device: torch.device) -> dict[str, Any]:
    """Where the numbers come from."""
    info = _lscpu()
    out = {"platform": platform.platform(), "python": platform.python_version(), "machine": platform.machine(),
           "cpu_model": info.get("Model name", platform.processor()), "cpu_family": info.get("CPU family"),
           "cpu_model_id": info.get("Model"), "cpus": os.cpu_count(), "torch": torch.__version__,
           "torch_threads": torch.get_num_threads(), "torch_interop_threads": torch.get_num_interop_threads(),
           "mkldnn": torch.backends.mkldnn.is_available(), "device": str(device), "shared_machine_note": "timings are medians"}
    if device.type == "cuda":
        out.update(gpu=torch.cuda.get_device_name(device), cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version())
    return out


