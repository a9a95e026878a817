"""The grid's checks on validation (issue 26): the deployed classifier, the fair-baseline and own-probe
checks, the statistics with Holm, the recipe-space edge flag, and results.csv of an earlier version."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from cryomonai.evaluation.stats import arms_vs_baseline
from cryomonai.experiment import write_table
from cryomonai.experiment.checks import deployed, recipe_edges
from cryomonai.experiment.layout import GridLayout
from cryomonai.experiment.tables import ADDED_RESULT_COLUMNS, RESULT_COLUMNS, GridTables


def _rows(val: dict, probe_val: dict, test: dict, probe_test: dict, methods=("random", "moco"), fraction=0.1) -> pd.DataFrame:
    """3 repeats per method on one dataset: per-method lists of the four accuracies; deployed as the grid does."""
    rows = []
    for m in methods:
        for r in range(3):
            row = {"dataset": "d", "snr": math.inf, "method": m, "label_fraction": fraction, "repeat": r, "recipe": "a",
                   "best_val_accuracy": val[m][r], "val_linear_probe_accuracy": probe_val[m][r],
                   "test_accuracy": test[m][r], "linear_probe_accuracy": probe_test[m][r], "knn_accuracy": math.nan}
            rows.append({**row, **deployed(row)})
    return pd.DataFrame(rows)


def _section(text: str, title: str) -> str:
    return text.split(title, 1)[1].split("\n## ", 1)[0]


def test_deployed_follows_validation_not_test() -> None:
    """The probe wins on validation but loses on test: the probe is deployed (and its test accuracy reported)."""
    row = {"best_val_accuracy": 0.50, "val_linear_probe_accuracy": 0.55, "test_accuracy": 0.70,
           "linear_probe_accuracy": 0.40}
    assert deployed(row) == {"deployed": "probe", "deployed_test_accuracy": 0.40}
    tie = {**row, "val_linear_probe_accuracy": 0.50}
    assert deployed(tie) == {"deployed": "finetune", "deployed_test_accuracy": 0.70}  # ties: fine-tune
    assert deployed({**row, "val_linear_probe_accuracy": math.nan})["deployed"] == "finetune"  # no probe run


def test_deployed_section_shows_each_arms_deployed_accuracy(tmp_path) -> None:
    df = _rows(val={"random": [0.5, 0.5, 0.5], "moco": [0.6, 0.6, 0.6]},
               probe_val={"random": [0.6, 0.4, 0.4], "moco": [0.7, 0.7, 0.7]},
               test={"random": [0.50, 0.52, 0.54], "moco": [0.9, 0.91, 0.93]},
               probe_test={"random": [0.30, 0.3, 0.3], "moco": [0.65, 0.66, 0.67]})
    assert df.loc[df.method == "moco", "deployed"].eq("probe").all()
    assert df.loc[df.method == "random", "deployed"].tolist() == ["probe", "finetune", "finetune"]
    text = write_table(df, tmp_path / "table.md").read_text()
    section = _section(text, "## Deployed classifier")
    random = np.mean([0.30, 0.52, 0.54])
    assert f"| 10 | {100 * random:.1f} ± " in section and "(probe 1/3)" in section
    assert "| 66.0 ± 1.0 (probe 3/3) |" in section  # moco: the probe's test accuracy, though fine-tune is better on test


def test_fair_baseline_check_reads_validation_not_test(tmp_path) -> None:
    """Test says the baseline beats its probe, validation says it does not: validation decides (and loudly)."""
    df = _rows(val={"random": [0.30, 0.31, 0.29], "moco": [0.5] * 3},
               probe_val={"random": [0.33, 0.30, 0.33], "moco": [0.4] * 3},
               test={"random": [0.60, 0.61, 0.62], "moco": [0.7, 0.71, 0.73]},
               probe_test={"random": [0.20, 0.21, 0.22], "moco": [0.4] * 3})
    text = write_table(df, tmp_path / "table.md").read_text()
    section = _section(text, "## Fair-baseline check")
    assert "> **The fair baseline is broken**" in section and "the test split is not read" in section
    assert "| -3.0, +1.0, -4.0 | -2.0 | 2 | **no** |" in section  # per-repeat margins, in points
    # the reverse: validation passes, test would fail — the check passes
    df2 = df.copy()
    df2[["best_val_accuracy", "val_linear_probe_accuracy", "test_accuracy", "linear_probe_accuracy"]] = \
        df[["val_linear_probe_accuracy", "best_val_accuracy", "linear_probe_accuracy", "test_accuracy"]].to_numpy()
    section = _section(write_table(df2, tmp_path / "t2.md").read_text(), "## Fair-baseline check")
    assert "broken" not in section and "| +3.0, -1.0, +4.0 | +2.0 | 1 | yes |" in section
    # every arm against its own probe: moco passes on validation (+10 points each repeat)
    own = _section(text, "## Fine-tuned vs its own frozen-feature probe")
    assert "| MoCo | 10 | 50.0 | 40.0 | +10.0, +10.0, +10.0 | +10.0 | 0 | yes |" in own
    assert "**1 of 2 arm × fraction cells fail**" in own and "leans towards the fine-tuned model" in own


def test_checks_say_so_when_the_results_have_no_validation_probe(tmp_path) -> None:
    df = _rows(val={"random": [0.3] * 3, "moco": [0.5] * 3}, probe_val={"random": [0.2] * 3, "moco": [0.4] * 3},
               test={"random": [0.3, 0.31, 0.32], "moco": [0.5, 0.52, 0.51]}, probe_test={"random": [0.2] * 3, "moco": [0.4] * 3})
    old = df.drop(columns=sorted(ADDED_RESULT_COLUMNS & set(df.columns)))
    text = write_table(old, tmp_path / "table.md").read_text()
    assert _section(text, "## Fair-baseline check").count("no validation probe") == 1
    assert "## Deployed classifier" not in text


def test_statistics_table_has_student_welch_paired_and_holm(tmp_path) -> None:
    rows = []
    for fraction, gain in ((0.1, 0.2), (1.0, 0.02)):
        for m, shift in (("random", 0.0), ("simclr", gain), ("moco", gain / 2)):
            for r, noise in enumerate((0.0, 0.02, -0.01)):
                rows.append({"dataset": "d", "snr": 0.05, "method": m, "label_fraction": fraction, "repeat": r,
                             "test_accuracy": 0.4 + shift + noise * (1 + (m == "moco"))})
    df = pd.DataFrame(rows)
    text = write_table(df, tmp_path / "table.md").read_text()
    section = _section(text, "## Statistics: every arm vs Random init")
    assert "| Student p | Welch p | paired p | Holm Student | Holm Welch | Holm paired |" in section
    assert "over the grid's 4 comparisons" in section
    stats = arms_vs_baseline(df)
    assert (stats["student_p_holm"] >= stats["student_p"]).all()
    simclr = stats[(stats.method == "simclr") & (stats.label_fraction == 1.0)].iloc[0]
    line = next(x for x in section.splitlines() if x.startswith("| SNR 0.05 (`d`) | 100 | SimCLR |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[5] == f"{simclr.student_p:.3f}" and cells[8] == f"{simclr.student_p_holm:.3f}"
    assert cells[3] == "+2.0" and cells[4] == "3 / 3 / 3"


def test_recipe_edge_flag() -> None:
    """lr 1e-3 is the largest on offer, 1e-4 the smallest encoder rate; 3e-4 is inside neither."""
    recipes = {"a": {"lr": 0.001}, "b": {"lr": 0.001, "encoder_lr": 0.0001}, "c": {"lr": 0.0003}, "d": {"lr": 0.0001, "encoder_lr": 0.0003}}
    chosen = pd.DataFrame({"dataset": "d", "method": ["random", "moco", "simclr", "swav"], "recipe": ["a", "b", "c", "d"]})
    edges = recipe_edges(chosen, recipes)
    got = {(r.method, r.key, r.edge) for r in edges.itertuples()}
    assert got == {("random", "lr", "largest"), ("random", "encoder_lr", "largest"), ("moco", "lr", "largest"),
                   ("moco", "encoder_lr", "smallest"), ("swav", "lr", "smallest")}
    assert recipe_edges(chosen, {"a": {"lr": 0.001}}).empty  # one recipe: no space to be at the edge of
    assert recipe_edges(chosen.assign(recipe="c"), {"c": {"lr": "$@x"}, "a": {"lr": 0.1}}).empty  # an expression
    # a recipe without lr has finetune.json's 0.0005; without encoder_lr its lr
    assert set(recipe_edges(chosen.assign(recipe="x"), {"x": {}, "y": {"lr": 0.001}})["edge"]) == {"smallest"}


def test_edge_flag_in_the_recipe_section(tmp_path) -> None:
    df = pd.DataFrame({"dataset": "d", "method": ["random"] * 2 + ["moco"] * 2, "label_fraction": 1.0,
                       "repeat": [0, 1] * 2, "recipe": ["hi"] * 2 + ["mid"] * 2, "test_accuracy": [0.3, 0.32, 0.5, 0.52]})
    recipes = {"hi": {"lr": 0.01}, "mid": {"lr": 0.001}, "lo": {"lr": 0.0001}}
    section = _section(write_table(df, tmp_path / "table.md", recipes=recipes).read_text(), "## Fine-tuning recipe per arm")
    assert "**At the edge: widen the space.**" in section
    assert "| d | Random init | `hi` | `lr` | 0.01 | largest |" in section and "| MoCo | `mid` | `lr`" not in section


def test_results_of_an_earlier_version_load_and_resume(tmp_path) -> None:
    """A results.csv without the columns added since reads with them as NaN; the next row writes them all."""
    layout = GridLayout(tmp_path)
    old_columns = [c for c in RESULT_COLUMNS if c not in ADDED_RESULT_COLUMNS]
    layout.results.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame([dict.fromkeys(old_columns, 1) | {"dataset": "d", "method": "random", "label_fraction": 0.5,
                                                   "repeat": 0}]).to_csv(layout.results, index=False)
    tables = GridTables(layout)
    results = tables.results()
    assert list(results.columns) == RESULT_COLUMNS and results[sorted(ADDED_RESULT_COLUMNS)].isna().all().all()
    assert tables.done() == {("d", "random", 0.5, 0)}
    tables.add_result({**dict.fromkeys(RESULT_COLUMNS, 0.5), "dataset": "d", "method": "random", "repeat": 1,
                       "deployed": "probe"})
    again = pd.read_csv(layout.results)
    assert list(again.columns) == RESULT_COLUMNS and again["deployed"].tolist()[1] == "probe"
    # a file with columns this version does not know (or in another order) is still refused
    pd.DataFrame({"dataset": ["d"], "other": [1]}).to_csv(layout.results, index=False)
    with pytest.raises(Exception, match="not this version's"):
        tables.results()
