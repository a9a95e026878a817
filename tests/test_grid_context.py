"""The context control in the grid (issue 26 item 1): a dataset with ``context_control`` is simulated with
its context boxes, every cell is also scored on the context-only test boxes (``context_accuracy``), and
table.md says per dataset whether the benchmark is valid — the words follow the numbers."""

import math

import numpy as np
import pandas as pd

from cryomonai.experiment.grid import GridPreset, run_grid
from cryomonai.experiment.report_context import context_lines
from cryomonai.io import read_particle_table


def _tiny_context(**kw) -> GridPreset:
    ds = {"name": "ctx", "snr": 1.0, "n_per_class": 5, "box": 8, "binning": 2, "classes": ["1bxn", "1qvr", "3cf3"],
          "max_shift": 1.0, "n_neighbours": [0, 2], "workers": 0, "context_control": True}
    spec = dict(name="tiny_ctx", datasets=[ds, {**ds, "name": "plain", "context_control": False}], methods=["random"],
                label_fractions=[1.0], repeats=2, seed=5, common={"batch_size": 4}, finetune={"epochs": 1},
                readouts=False, report={"gradcam_examples": 0})
    spec.update(kw)
    return GridPreset(**spec)


def test_a_tiny_grid_with_the_control_fills_context_accuracy(tmp_path):
    out = tmp_path / "grid"
    results = run_grid(_tiny_context(), out, report=True, progress=False)
    ctx, plain = results[results["dataset"] == "ctx"], results[results["dataset"] == "plain"]
    assert len(ctx) == len(plain) == 2
    assert ctx["context_accuracy"].between(0, 1).all() and plain["context_accuracy"].isna().all()
    # the context copy: the test rows only, each pointing at its box without the target
    full = read_particle_table(out / "data" / "ctx" / "particles.star")
    copy = read_particle_table(out / "data" / "ctx" / "context" / "particles.star")
    test = full.df[full.df["split"] == "test"]
    assert len(copy) == len(test) and (copy.df["split"] == "test").all()
    assert [p.endswith("_context.mrc") for p in copy.df["path"]] == [True] * len(copy)
    assert list(copy.df["label"]) == list(test["label"])
    assert not (out / "data" / "plain" / "context").exists()
    # the real test predictions are kept; the context ones are the cell's eval_context/
    for run_dir in ctx["run_dir"]:
        assert (out / run_dir / "eval" / "predictions_test.csv").is_file()
        preds = pd.read_csv(out / run_dir / "eval_context" / "predictions_test.csv")
        assert len(preds) == len(copy)
    timings = pd.read_csv(out / "timings.csv")
    assert (timings["phase"] == "evaluate_context").sum() == 2
    table = (out / "table.md").read_text()
    assert "## Context control" in table and "(`plain`)" not in table.split("## Context control")[1]
    assert "SNR 1 (`ctx`): valid" in table or "SNR 1 (`ctx`): NOT VALID" in table


def _frame(context: list[float], n_fracs: int = 1) -> pd.DataFrame:
    rows = []
    for i, acc in enumerate(context):
        for f in range(n_fracs):
            rows.append({"dataset": "d", "snr": 0.05, "method": ["random", "simclr"][i % 2],
                         "label_fraction": [0.1, 1.0][f], "repeat": i // 2, "test_accuracy": 0.6, "context_accuracy": acc})
    return pd.DataFrame(rows)


def test_validity_follows_the_numbers():
    """Chance is 25 % with 4 classes: means of 27 % and 22 % are valid; a 31 % arm is not, and is named."""
    valid = "\n".join(context_lines(_frame([0.26, 0.22, 0.28, 0.22]), 4))
    assert "SNR 0.05 (`d`): valid: context-only accuracy within 5 points of chance (25.0 %)" in valid
    assert "NOT VALID" not in valid and "| SNR 0.05 (`d`) | 10 | SimCLR | 60.0 ± 0.0 | 22.0 ± 0.0 | 25.0 | yes |" in valid
    bad = "\n".join(context_lines(_frame([0.26, 0.30, 0.28, 0.32]), 4))
    assert "SNR 0.05 (`d`): NOT VALID: context-only accuracy more than 5 points from chance (25.0 %)" in bad
    assert "SimCLR at 10 % labels: 31.0 %" in bad and "Random init at 10" not in bad.split("NOT VALID")[1]
    low = "\n".join(context_lines(_frame([0.19, 0.25]), 4))  # far below chance reads the context too
    assert "NOT VALID" in low and "19.0 %" in low
    # 10 classes: chance 10 %; 14 % is within 5 points, 16 % is not
    assert "valid: " in "\n".join(context_lines(_frame([0.14, 0.14]), 10))
    assert "NOT VALID" in "\n".join(context_lines(_frame([0.16, 0.10]), 10))


def test_no_control_no_section():
    df = _frame([math.nan, np.nan])
    assert context_lines(df, 4) == [] and context_lines(df.drop(columns="context_accuracy"), 4) == []
