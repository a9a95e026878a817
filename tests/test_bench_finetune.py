"""The fine-tuning benchmark (``benchmarks/bench_finetune.py``) runs end to end with ``--quick``.

Checks what its numbers rest on, not the numbers: every stage has a positive, finite rate, and the
bundle runs really differ in the switch they compare (the loader's batches are plain tensors with
the defaults, MONAI ``MetaTensor`` objects with ``track_meta`` true). No timing assertions.
"""

from __future__ import annotations

import json
import math

import pytest


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict:
    import torch

    from benchmarks import bench_finetune as module
    out = tmp_path_factory.mktemp("bench") / "bench_finetune.json"
    threads = torch.get_num_threads()
    try:
        returned = module.main(["--quick", "--out", str(out)])
    finally:
        torch.set_num_threads(threads)
    assert json.loads(out.read_text()) == returned
    return returned


def _rate(stage: dict) -> float:
    return stage["samples_per_s"]


def test_every_stage_has_a_positive_rate(result: dict) -> None:
    rates = [*map(_rate, result["a_bare_step"].values()), _rate(result["b_views"]),
             *map(_rate, result["c_bare_step_with_views"].values())]
    rates += [_rate(run["iteration"]) for key in ("d_bundle", "d_bundle_meta") for run in result[key]]
    assert len(rates) == 4 + 1 + 4 + 2 and all(math.isfinite(r) and r > 0 for r in rates)
    assert result["ratios"]["best_bare_variant"] in result["a_bare_step"]
    assert result["machine"]["cpu_model"] and result["machine"]["torch"] == result["torch"]


def test_the_bundle_runs_differ_in_the_switch_they_compare(result: dict) -> None:
    assert [run["batch_type"] for run in result["d_bundle"]] == ["Tensor"]  # the default: track_meta false
    assert [run["batch_type"] for run in result["d_bundle_meta"]] == ["MetaTensor"]
    fetch = result["ratios"]["fetch_ms track_meta false / true (medians over the alternated runs)"]
    assert fetch == [result["d_bundle"][0]["fetch_ms_median"], result["d_bundle_meta"][0]["fetch_ms_median"]]
