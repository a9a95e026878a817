"""The report's "which method to use" section: chosen on validation, tested on test, Holm over its rows."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.stats import ttest_ind, ttest_rel

from cryomonai.evaluation.stats import holm
from cryomonai.experiment import write_table
from cryomonai.experiment.advice import advice_lines, advise, deployed_scores, labels_to_match

#: (dataset, fraction, method) → (validation, test) accuracies of the fine-tuned model, 3 repeats, and
#: the validation / test accuracies of the probe on its frozen features.
FT = {
    # at 10 %: fine-tuned, MoCo is best on validation and SimCLR on test; with its probe (below) SimCLR's
    # deployed classifier is best on validation
    ("d", 0.1, "random"): ([0.30, 0.31, 0.29], [0.28, 0.30, 0.29]),
    ("d", 0.1, "simclr"): ([0.33, 0.34, 0.35], [0.60, 0.62, 0.61]),
    ("d", 0.1, "moco"): ([0.40, 0.41, 0.42], [0.41, 0.47, 0.44]),
    # at 100 %: no SSL arm above random init on validation
    ("d", 1.0, "random"): ([0.70, 0.72, 0.71], [0.43, 0.46, 0.44]),
    ("d", 1.0, "simclr"): ([0.60, 0.61, 0.62], [0.80, 0.82, 0.81]),
    ("d", 1.0, "moco"): ([0.65, 0.66, 0.64], [0.75, 0.76, 0.74]),
}
PROBE = {  # SimCLR's probe beats its fine-tuned model on validation at 10 % in repeats 0 and 1
    ("d", 0.1, "simclr"): ([0.45, 0.46, 0.20], [0.50, 0.52, 0.10]),
}


def _results() -> pd.DataFrame:
    rows = []
    for (dataset, fraction, method), (val, test) in FT.items():
        probe_val, probe_test = PROBE.get((dataset, fraction, method), ([0.0] * 3, [0.0] * 3))
        for r in range(3):
            rows.append({"dataset": dataset, "snr": 0.05, "method": method, "label_fraction": fraction, "repeat": r,
                         "best_val_accuracy": val[r], "test_accuracy": test[r],
                         "val_linear_probe_accuracy": probe_val[r], "linear_probe_accuracy": probe_test[r]})
    return pd.DataFrame(rows)


def test_the_deployed_classifier_is_the_probe_where_it_wins_on_validation() -> None:
    df = deployed_scores(_results())
    simclr = df[(df["method"] == "simclr") & (df["label_fraction"] == 0.1)].sort_values("repeat")
    assert simclr["kind"].tolist() == ["probe", "probe", "finetune"]
    assert simclr["val"].tolist() == [0.45, 0.46, 0.35]
    assert simclr["test"].tolist() == [0.50, 0.52, 0.61]


def test_the_advice_is_chosen_on_validation_and_tested_on_test() -> None:
    advice = advise(_results()).set_index("label_fraction")
    # 10 %: SimCLR's deployed classifier (probe, probe, fine-tuned) has mean validation 0.42 > MoCo's 0.41
    assert np.mean([0.45, 0.46, 0.35]) > np.mean([0.40, 0.41, 0.42])
    at10 = advice.loc[0.1]
    assert at10["best_ssl"] == "simclr" and at10["choice"] == "simclr"
    assert at10["kind"] == "probe" and at10["probe_share"] == "2/3"
    assert math.isclose(at10["ssl_test"], np.mean([0.50, 0.52, 0.61]))
    assert math.isclose(at10["baseline_test"], np.mean([0.28, 0.30, 0.29]))
    # 100 %: both SSL arms are far better on test, but below random init on validation: random init
    at100 = advice.loc[1.0]
    assert at100["best_ssl"] == "moco" and at100["choice"] == "random"
    assert at100["mean_difference"] > 0.25  # the test gain is reported, not chosen on
    # significant only where the advice is the SSL arm: at 100 % its test gain is large, but not the advice
    assert at100["welch_p_holm"] < 0.05 and not at100["significant"]
    assert at10["significant"]


def test_p_values_are_scipys_tests_holm_adjusted_over_the_advice() -> None:
    advice = advise(_results()).sort_values("label_fraction")
    ssl = {0.1: [0.50, 0.52, 0.61], 1.0: [0.75, 0.76, 0.74]}
    base = {0.1: [0.28, 0.30, 0.29], 1.0: [0.43, 0.46, 0.44]}
    welch = [ttest_ind(ssl[f], base[f], equal_var=False).pvalue for f in (0.1, 1.0)]
    paired = [ttest_rel(ssl[f], base[f]).pvalue for f in (0.1, 1.0)]
    np.testing.assert_allclose(advice["welch_p"], welch)
    np.testing.assert_allclose(advice["welch_p_holm"], holm(welch))
    np.testing.assert_allclose(advice["paired_p_holm"], holm(paired))
    chosen = (advice["choice"] == advice["best_ssl"]).tolist()  # [True, False]: at 100 % the advice is random init
    assert advice["significant"].tolist() == [bool(p < 0.05) and c for p, c in zip(holm(welch), chosen)]


def test_labels_needed_reads_the_choice_at_each_fraction() -> None:
    df = _results()
    match = labels_to_match(advise(df), df).iloc[0]
    # random init with 100 %: mean test 0.4433; SimCLR's deployed classifier at 10 %: 0.5433
    assert match["fraction"] == 0.1 and match["choice"] == "simclr"
    assert math.isclose(match["baseline_top"], np.mean([0.43, 0.46, 0.44]))
    df.loc[df["method"] != "random", ["test_accuracy", "linear_probe_accuracy"]] = 0.0
    assert math.isnan(labels_to_match(advise(df), df).iloc[0]["fraction"])  # nothing reaches it


def test_table_md_answers_which_method_to_use(tmp_path) -> None:
    text = write_table(_results(), tmp_path / "table.md").read_text()
    section = text.split("## Which method to use")[1].split("\n## ")[0]
    rows = [line for line in section.splitlines() if line.startswith("| SNR 0.05") and line.count(" | ") > 3]
    assert len(rows) == 2
    assert "SimCLR (probe)" in rows[0] and "(2/3)" in rows[0]
    assert rows[1].split(" | ")[2].startswith("random init")
    assert "**10 %** of the labels (SimCLR, 54.3 %) reach Random init with 100 % (44.3 %)" in section
    assert text.index("## Which method to use") < text.index("## Statistics")
    # at a glance: the same rows, one line per dataset
    assert "| SNR 0.05 (`d`) | **SimCLR probe +25.3 (p 0.015)** | Random init (MoCo +30.7) |" in section
    assert advice_lines(_results()[lambda d: d["method"] == "random"]) == []  # nothing to compare
