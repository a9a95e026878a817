"""The confirmation run's target verdicts (docs/records/confirm/targets.py) on made-up results: each target
turns "not met" when its own condition fails, and only then. Fixed before the run's numbers are read."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
DATASETS = {"snr0.05_a": 0.05, "snr0.05_b": 0.05, "snr_inf": float("inf")}
ARMS = ("random", "simclr", "moco")


@pytest.fixture(scope="module")
def targets():
    spec = importlib.util.spec_from_file_location("confirm_targets", ROOT / "docs/records/confirm/targets.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.targets


def results(gain: float = 0.25, context: float = 0.10, probe_gap: float = 0.05) -> pd.DataFrame:
    """A confirm-shaped results table: SSL arms ``gain`` above random on validation and test (a little
    noise per repeat), every fine-tuned model ``probe_gap`` above its own probe on validation."""
    rng = np.random.default_rng(0)
    rows = []
    for dataset, snr in DATASETS.items():
        for method in ARMS:
            for fraction in (0.01, 0.1, 1.0):
                for repeat in range(3):
                    acc = 0.20 + 0.25 * fraction + (gain if method != "random" else 0.0) + rng.normal(0, 0.005)
                    rows.append({"dataset": dataset, "snr": snr, "method": method, "label_fraction": fraction,
                                 "repeat": repeat, "seed": repeat, "recipe": "adam_1e-3",
                                 "pretrain_seed": np.nan if method == "random" else repeat,
                                 "best_val_accuracy": acc, "test_accuracy": acc,
                                 "val_linear_probe_accuracy": acc - probe_gap, "linear_probe_accuracy": acc - probe_gap,
                                 "deployed": "finetune", "deployed_test_accuracy": acc, "context_accuracy": context})
    return pd.DataFrame(rows)


def verdicts(lines: list[str], target: str) -> list[str]:
    """Each ``target`` row's (where, verdict)."""
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    return [(c[1], c[3]) for c in cells if c[0].startswith(target)]


def test_a_clear_gain_meets_every_target(targets):
    lines = targets(results(), 10)
    assert lines[0].startswith("| target |") and len(lines) == 2 + 3 + 3 * 2 + 1 + 1
    assert all(line.endswith("| met |") for line in lines[2:]), "\n".join(lines)


def test_each_target_fails_on_its_own_condition(targets):
    # no gain: the 10-point target and the moonshot fail, the rest hold
    lines = targets(results(gain=0.0), 10)
    assert {v for _, v in verdicts(lines, "best SSL")} == {"**not met**"}
    assert {v for _, v in verdicts(lines, "moonshot")} == {"**not met**"}
    assert {v for _, v in verdicts(lines, "context-only")} == {"met"}
    # a context shortcut on one dataset fails that dataset only
    df = results()
    df.loc[df["dataset"] == "snr_inf", "context_accuracy"] = 0.16
    got = dict(verdicts(targets(df, 10), "context-only"))
    assert got == {"SNR 0.05 (`snr0.05_a`)": "met", "SNR 0.05 (`snr0.05_b`)": "met", "SNR ∞ (`snr_inf`)": "**not met**"}
    # one arm whose fine-tuning falls below its own probe on validation is named
    df = results()
    below = (df["dataset"] == "snr0.05_b") & (df["method"] == "moco") & (df["label_fraction"] == 0.1)
    df.loc[below, "val_linear_probe_accuracy"] = df.loc[below, "best_val_accuracy"] + 0.02
    (where, verdict), = verdicts(targets(df, 10), "fine-tuned ≥ own probe")
    line = [x for x in targets(df, 10) if x.startswith("| fine-tuned ≥ own probe")][0]
    assert verdict == "**not met**" and "26 of 27 pass" in line and "snr0.05_b MoCo 10 %" in line


def test_every_ssl_method_must_reach_the_baseline(targets):
    df = results()
    worse = (df["method"] == "moco") & (df["label_fraction"] == 0.1) & (df["dataset"] == "snr0.05_a")
    df.loc[worse, ["test_accuracy", "deployed_test_accuracy", "best_val_accuracy"]] -= 0.30
    df.loc[worse, ["val_linear_probe_accuracy", "linear_probe_accuracy"]] -= 0.30
    got = dict(verdicts(targets(df, 10), "every SSL method"))
    assert got == {"SNR 0.05 (`snr0.05_a`), 10 %": "**not met**", "SNR 0.05 (`snr0.05_b`), 10 %": "met"}


def test_the_moonshot_reads_the_method_chosen_on_validation(targets):
    """An arm whose 10 % test mean reaches random init's 100 % counts only if validation chose it."""
    df = results(gain=0.0)
    lucky = (df["method"] == "moco") & (df["label_fraction"] == 0.1) & (df["dataset"] == "snr_inf")
    df.loc[lucky, ["test_accuracy", "deployed_test_accuracy"]] = 0.60  # above random init's 100 % (≈ 0.45)
    df.loc[lucky, ["best_val_accuracy", "val_linear_probe_accuracy"]] = [0.10, 0.05]  # below SimCLR on validation
    (_, verdict), = verdicts(targets(df, 10), "moonshot")
    assert verdict == "**not met**"
    df.loc[lucky, ["best_val_accuracy", "val_linear_probe_accuracy"]] = [0.60, 0.55]  # now chosen on validation
    line = [x for x in targets(df, 10) if x.startswith("| moonshot")][0]
    assert line.endswith("| met |") and "SNR ∞ (`snr_inf`): MoCo 60.0 ≥ 45." in line, line
