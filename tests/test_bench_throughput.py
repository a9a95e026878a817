"""The throughput tool (``benchmarks/bench_throughput.py``) runs end to end with ``--quick``.

Checks the JSON it writes: every stage with a positive, finite rate, the ratios consistent with
the rates, the FLOP count, MFU, the batch sweep's memory, the bundle's switches and the machine; and
the GPU peak table. No timing assertions (the numbers depend on the host).
"""

from __future__ import annotations

import json
import math

import pytest


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict]:
    """Run ``main(["--quick", "--out", …])`` once; return (its return value, the JSON read back)."""
    import torch

    from benchmarks import bench_throughput as module
    out = tmp_path_factory.mktemp("bench") / "sub" / "bench.json"
    threads = torch.get_num_threads()
    try:
        returned = module.main(["--quick", "--out", str(out)])
    finally:
        torch.set_num_threads(threads)
    return returned, json.loads(out.read_text())


def _positive(x: float) -> bool:
    return isinstance(x, float) and math.isfinite(x) and x > 0


def test_every_stage_has_a_positive_rate(result: tuple[dict, dict]) -> None:
    _, res = result
    stages = res["stages"]
    assert set(stages) == {"bare_loop", "bundle", "bundle_device_views", "pipeline", "device_views", "simulator",
                           "inference", "batch_sweep"}
    for name in ("bundle", "bundle_device_views", "pipeline", "device_views", "simulator", "inference"):
        assert _positive(stages[name]["samples_per_s"]), name
        assert stages[name]["n_timed"] >= 1
    bare = stages["bare_loop"]
    assert _positive(bare["contiguous"]["samples_per_s"]) and _positive(bare["channels_last_3d"]["samples_per_s"])
    assert bare["best_format"] in ("contiguous", "channels_last_3d")
    assert bare["samples_per_s"] == max(bare["contiguous"]["samples_per_s"], bare["channels_last_3d"]["samples_per_s"])
    # timed before and after the bundle, pooled: twice the steps of one half
    assert set(bare["halves"]) == {"before_bundle", "after_bundle"}
    assert bare["contiguous"]["n_timed"] == 2 * res["sizes"]["bare_rounds"] * res["sizes"]["bare_steps"]
    # on CPU the bundle runs bf16 autocast where the processor has bf16 units (else fp32); the other is the extra line
    from cryomonai.engines import native_bf16

    bf16 = native_bf16("cpu")
    extra = "channels_last_3d_fp32" if bf16 else "channels_last_3d_bf16"
    assert bare["precision"] == ("bfloat16" if bf16 else "float32") and bare["extra_variant"] == extra
    assert _positive(bare[extra]["samples_per_s"])
    assert _positive(stages["bundle"]["step_only"]["samples_per_s"])
    assert stages["bundle"]["iterations"] > stages["bundle"]["warmup_iterations"]
    assert 0.0 < stages["bundle"]["data_fraction"] < 1.0
    assert _positive(stages["inference"]["channels_last_3d"]["samples_per_s"])
    # the inference line is in the bundle's format (channels_last by default)
    assert stages["inference"]["format"] == "channels_last_3d"
    assert stages["inference"]["samples_per_s"] == stages["inference"]["channels_last_3d"]["samples_per_s"]
    assert _positive(stages["pipeline"]["without_metatensor"]["samples_per_s"])
    assert _positive(stages["pipeline"]["with_metatensor"]["samples_per_s"])
    # the bundle's pretraining views are plain tensors (track_meta false): the top level is that pipeline
    assert stages["pipeline"]["track_meta"] is False and stages["pipeline"]["view_type"] == "Tensor"
    assert stages["pipeline"]["samples_per_s"] == stages["pipeline"]["without_metatensor"]["samples_per_s"]
    # the pipeline's views are float32 tensors
    assert stages["pipeline"]["view_dtype"] == "torch.float32"
    # (b') is the bundle with the views made in the step; (c') times both batched twins, paper's on top
    assert stages["bundle_device_views"]["overrides"]["augment_on_device"] == "True"
    views = stages["device_views"]
    assert _positive(views["cryo3d_so3"]["samples_per_s"]) and views["samples_per_s"] == views["paper"]["samples_per_s"]


def test_ratios_follow_from_the_rates(result: tuple[dict, dict]) -> None:
    _, res = result
    s, r = res["stages"], res["ratios"]
    assert r["bundle_over_bare"] == pytest.approx(s["bundle"]["samples_per_s"] / s["bare_loop"]["samples_per_s"])
    assert r["pipeline_over_bundle"] == pytest.approx(s["pipeline"]["samples_per_s"] / s["bundle"]["samples_per_s"])
    assert r["device_views_over_bare"] == pytest.approx(
        s["device_views"]["samples_per_s"] / s["bare_loop"]["samples_per_s"])
    assert all(_positive(v) for v in r.values())


def test_flops_machine_and_memory(result: tuple[dict, dict]) -> None:
    returned, res = result
    f = res["flops"]
    # one step = query fwd + bwd (~2x fwd, minus the first conv's unneeded input gradient) + key fwd:
    # just under 4 encoder forwards of the batch (2x would mean the backward was not counted)
    assert 3 * f["encoder_forward_flops"] < f["step_flops"] <= 4 * f["encoder_forward_flops"]
    assert _positive(f["achieved_flops"])
    if f["peak"]["peak_flops"] is not None:
        assert 0 < f["fraction_of_peak"] < 1
        assert f["peak"]["assumption"]
    assert res["peak_rss_mib"] > 0 and res["machine"]["torch"] and res["machine"]["cpu_model"]
    assert res["quick"] is True and res["sizes"]["box"] == 16
    assert returned["ratios"] == res["ratios"]  # main's return value is what it wrote


def test_bundle_switches_batch_sweep_and_mfu(result: tuple[dict, dict]) -> None:
    _, res = result
    sw = res["bundle_switches"]
    from cryomonai.engines import native_bf16

    bf16 = native_bf16("cpu")  # the bundle's CPU default follows the processor
    assert sw["channels_last"] is True and sw["amp"] is bf16 and sw["num_workers"] == 1
    assert sw["amp_dtype"] == ("bfloat16" if bf16 else None) or (bf16 and sw["amp_dtype"] is not None)
    assert sw["track_meta"] is False
    sweep = res["stages"]["batch_sweep"]
    assert [row["batch"] for row in sweep] == res["sizes"]["sweep_batches"] == [2, 4]
    for row in sweep:
        assert "error" not in row, row
        assert _positive(row["samples_per_s"]) and _positive(row["peak_rss_mib"]) and _positive(row["mfu"])
    f = res["flops"]
    # MoCo v2 (asymmetric): one query pass with backward (3F) + one key pass (F) per sample
    assert f["model_flops_per_sample"] == pytest.approx(4 * f["branch_forward_flops_per_sample"])
    assert f["branch_forward_flops_per_sample"] >= f["encoder_forward_flops"] / res["sizes"]["batch"]
    peak = f["peak"]["peak_flops"]
    for key, rate in (("bare", res["stages"]["bare_loop"]["samples_per_s"]), ("bundle", res["stages"]["bundle"]["samples_per_s"])):
        assert f["model_flops_per_s"][key] == pytest.approx(f["model_flops_per_sample"] * rate)
        if peak is not None:
            assert f["mfu"][key] == pytest.approx(f["model_flops_per_s"][key] / peak) and 0 < f["mfu"][key] < 1


@pytest.mark.parametrize(
    ("name", "amp_dtype", "tf32", "model", "peak"),
    [
        ("NVIDIA H100 80GB HBM3", "bfloat16", True, "H100 SXM", 989e12),
        ("NVIDIA H200", "bfloat16", True, "H200 SXM (= H100 SXM)", 989e12),
        ("NVIDIA H200", None, False, "H200 SXM (= H100 SXM)", 67e12),
        ("NVIDIA A100-SXM4-80GB", None, True, "A100", 156e12),
        ("NVIDIA A100-SXM4-40GB", None, False, "A100", 19.5e12),
        ("NVIDIA H100 PCIe", "bfloat16", True, "unknown", None),
        ("NVIDIA GeForce RTX 4090", "bfloat16", True, "unknown", None),
    ],
)
def test_gpu_peak_table(name: str, amp_dtype: str | None, tf32: bool, model: str, peak: float | None,
                        monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from benchmarks.bench_machine import gpu_peak

    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", tf32)
    out = gpu_peak(name, amp_dtype)
    assert out["model"] == model and out["peak_flops"] == peak
    assert out["precision"] == ("bf16" if amp_dtype else "tf32" if tf32 else "fp32")
