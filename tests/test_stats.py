"""Statistics for the report: two arms side by side (Student, Welch, paired), Holm's correction, and
the fine-tuned model against the probe on its own frozen features, per repeat."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import ttest_ind, ttest_rel

from cryomonai.errors import CryoDataError
from cryomonai.evaluation.stats import (
    arms_vs_baseline,
    compare_arms,
    holm,
    own_probe_check,
    probe_margins,
    ttest_vs_baseline,
)


def _holm_by_definition(p: list[float]) -> list[float]:
    """Holm (1979) literally: sorted p_(i) → max over j ≤ i of min(1, (m − j + 1) p_(j)), back in input order."""
    m, order = len(p), sorted(range(len(p)), key=lambda i: p[i])
    out, running = [0.0] * m, 0.0
    for rank, i in enumerate(order, start=1):
        running = max(running, min(1.0, (m - rank + 1) * p[i]))
        out[i] = running
    return out


def test_holm_by_hand() -> None:
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.6]).tolist() == [1.0, 1.0]  # capped at 1
    assert holm([0.04]).tolist() == [0.04]  # a family of one is not corrected
    assert holm([0.01, 0.011, 0.5]) == pytest.approx([0.03, 0.03, 0.5])  # monotone: 2 × 0.011 < 0.03 is raised
    adjusted = holm([0.02, math.nan, 0.01])  # NaN stays NaN and is not counted in m
    assert np.isnan(adjusted[1]) and adjusted[[0, 2]] == pytest.approx([0.02, 0.02])
    assert holm([]).shape == (0,)


def test_holm_matches_its_definition_on_random_families() -> None:
    rng = np.random.default_rng(0)
    for m in (2, 5, 12):
        p = (rng.random(m) ** 3).tolist()
        adjusted = holm(p)
        assert adjusted == pytest.approx(_holm_by_definition(p))
        assert (adjusted >= np.asarray(p)).all() and (adjusted <= 1).all()
        order = np.argsort(p)
        assert (np.diff(adjusted[order]) >= 0).all()


def test_compare_arms_gives_scipys_three_tests_side_by_side() -> None:
    arm, base = [0.41, 0.38, 0.45, 0.40], [0.30, 0.33, 0.31, 0.36]
    r = compare_arms(arm, base)
    assert r["mean_difference"] == pytest.approx(np.mean(arm) - np.mean(base))
    assert r["student_p"] == pytest.approx(ttest_ind(arm, base, equal_var=True).pvalue)
    assert r["welch_p"] == pytest.approx(ttest_ind(arm, base, equal_var=False).pvalue)
    assert r["paired_p"] == pytest.approx(ttest_rel(arm, base).pvalue)
    assert r["student_t"] > 0 and r["paired_t"] > 0 and r["note"] == "" and r["n_pairs"] == 4
    assert r["welch_p"] != pytest.approx(r["student_p"]) != pytest.approx(r["paired_p"])


def test_compare_arms_pairs_series_on_the_repeat() -> None:
    arm = pd.Series([0.41, 0.38, 0.45, 0.40], index=[0, 1, 2, 3])
    base = pd.Series([0.36, 0.31, 0.33, 0.30], index=[3, 2, 1, 0])  # the same repeats, in another order
    r = compare_arms(arm, base)
    assert r["paired_p"] == pytest.approx(ttest_rel([0.41, 0.38, 0.45, 0.40], [0.30, 0.33, 0.31, 0.36]).pvalue)
    partial = compare_arms(arm, base.drop(index=2))  # repeat 2 missing: 3 pairs, independent tests use all
    assert partial["n"] == 4 and partial["baseline_n"] == 3 and partial["n_pairs"] == 3
    with pytest.raises(CryoDataError, match="paired by position"):
        compare_arms([0.1, 0.2, 0.3], [0.1, 0.2])


def test_compare_arms_says_why_a_test_is_undefined() -> None:
    one = compare_arms([0.4], [0.3])
    assert math.isnan(one["student_p"]) and math.isnan(one["paired_p"]) and "≥ 2" in one["note"]
    flat = compare_arms([0.4, 0.4, 0.4], [0.3, 0.3, 0.3])
    assert math.isnan(flat["student_p"]) and math.isnan(flat["welch_p"]) and math.isnan(flat["paired_p"])
    assert "no variance" in flat["note"] and flat["mean_difference"] == pytest.approx(0.1)
    shift = compare_arms([0.4, 0.5, 0.6], [0.3, 0.4, 0.5])  # the same difference in every repeat
    assert math.isnan(shift["paired_p"]) and not math.isnan(shift["student_p"])


def test_float_noise_is_no_variance_in_both_tables() -> None:
    """0.1 + 0.2 is not 0.3 in floating point: Table 1's test and the statistics table agree it is no variance
    (the Table 1 test once gave p = 1e-61 from a t of 1e15)."""
    arm, base = [0.3, 0.1 + 0.2, 0.3], [0.2, 0.2, 0.2]
    assert np.ptp(arm) > 0
    df = pd.DataFrame([{"dataset": "d", "method": m, "label_fraction": 0.1, "repeat": r, "test_accuracy": v}
                       for m, values in (("moco", arm), ("random", base)) for r, v in enumerate(values)])
    row = ttest_vs_baseline(df).iloc[0]
    assert math.isnan(row["p"]) and "zero variance" in row["note"]
    assert math.isnan(compare_arms(arm, base)["welch_p"])


def test_arms_vs_baseline_pairs_on_repeat_and_corrects_over_the_table() -> None:
    rows = []
    acc = {"random": [0.30, 0.33, 0.31], "simclr": [0.41, 0.38, 0.45], "moco": [0.35, 0.30, 0.36]}
    for fraction in (0.1, 1.0):
        for method, values in acc.items():
            for repeat, value in enumerate(values):
                rows.append({"dataset": "d", "label_fraction": fraction, "method": method, "repeat": repeat,
                             "test_accuracy": value + fraction / 10})
    table = arms_vs_baseline(pd.DataFrame(rows))
    assert len(table) == 4 and set(table["method"]) == {"simclr", "moco"}
    simclr = table[(table["method"] == "simclr") & (table["label_fraction"] == 0.1)].iloc[0]
    assert simclr["paired_p"] == pytest.approx(ttest_rel(acc["simclr"], acc["random"]).pvalue)
    assert simclr["welch_p"] == pytest.approx(ttest_ind(acc["simclr"], acc["random"], equal_var=False).pvalue)
    for test in ("student", "welch", "paired"):
        assert table[f"{test}_p_holm"].to_numpy() == pytest.approx(holm(table[f"{test}_p"].to_numpy()))


def test_probe_margins_per_repeat_and_the_rule() -> None:
    # issue 26: passes on the means (14.9 vs 13.1) with per-repeat margins +4.4, +1.2 and 0.0
    r = probe_margins([0.150, 0.140, 0.157], [0.106, 0.128, 0.157])
    assert r["margins_text"] == "+4.4, +1.2, +0.0" and r["passes"] and r["n_below"] == 0
    assert r["margins"] == pytest.approx([0.044, 0.012, 0.0]) and r["min_margin"] == pytest.approx(0.0)
    mixed = probe_margins([0.60, 0.45, 0.50], [0.50, 0.50, 0.52])  # the mean passes, two repeats lose: shown
    assert mixed["passes"] and mixed["n_below"] == 2 and mixed["mean_margin"] == pytest.approx(0.01)
    fails = probe_margins([0.431, 0.537, 0.650], [0.528, 0.657, 0.787])  # issue 26's SimCLR fine-tune vs its probe
    assert not fails["passes"] and fails["n_below"] == 3
    tie = probe_margins([0.1 + 0.2, 0.5], [0.3, 0.5])  # floating-point noise is a tie, and a tie passes
    assert tie["passes"] and tie["n_below"] == 0
    paired = probe_margins(pd.Series([0.5, 0.7], index=[1, 0]), pd.Series([0.6, 0.4], index=[0, 1]))
    assert paired["margins"] == pytest.approx([0.1, 0.1])
    with pytest.raises(CryoDataError):
        probe_margins([math.nan], [0.5])


def test_own_probe_check_reads_validation_for_every_arm_or_the_baseline() -> None:
    rows = []
    for method, ft, probe in (("random", [0.15, 0.14, 0.157], [0.106, 0.128, 0.157]),
                              ("simclr", [0.43, 0.54, 0.65], [0.53, 0.66, 0.79])):
        for repeat in range(3):
            rows.append({"dataset": "d", "label_fraction": 0.1, "method": method, "repeat": repeat,
                         "best_val_accuracy": ft[repeat], "val_linear_probe_accuracy": probe[repeat],
                         "test_accuracy": 0.99})
    every = own_probe_check(pd.DataFrame(rows))
    assert every.set_index("method")["passes"].to_dict() == {"random": True, "simclr": False}
    assert every.set_index("method").loc["random", "margins"] == "+4.4, +1.2, +0.0"
    baseline = own_probe_check(pd.DataFrame(rows), methods=["random"])
    assert list(baseline["method"]) == ["random"]
    with pytest.raises(CryoDataError, match="val_linear_probe_accuracy"):
        own_probe_check(pd.DataFrame(rows).drop(columns="val_linear_probe_accuracy"))
