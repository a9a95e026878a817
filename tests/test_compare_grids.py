"""``cryomonai compare`` (:mod:`cryomonai.experiment.compare`): two runs of one grid compared cell by cell,
arm by arm, conclusion by conclusion; and ``cryomonai ship-weights`` (:mod:`cryomonai.experiment.ship`)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cryomonai.errors import ConfigError, CryoDataError
from cryomonai.experiment import compare as compare_grids


def _cli(monkeypatch, *argv: str) -> int:
    """``cryomonai <argv>``: its exit status."""
    from cryomonai import cli

    monkeypatch.setattr(sys, "argv", ["cryomonai", *argv])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    return exit_info.value.code


def _results(ssl_gain: float, jitter: float, seed: int) -> pd.DataFrame:
    """A grid's results: random vs simclr at 10 and 100 % labels, 3 repeats; SimCLR ``ssl_gain`` better."""
    rng = np.random.default_rng(seed)
    rows = []
    for frac, base in ((0.1, 0.20), (1.0, 0.50)):
        for method in ("random", "simclr"):
            for repeat in range(3):
                mean = base + (ssl_gain if method == "simclr" and frac == 0.1 else 0.0)
                acc = mean + 0.01 * (repeat - 1) + jitter * rng.standard_normal()
                rows.append({"dataset": "d", "method": method, "label_fraction": frac, "repeat": repeat,
                             "recipe": "adam_1e-3", "test_accuracy": acc, "linear_probe_accuracy": acc - 0.05,
                             "knn_accuracy": acc - 0.1})
    return pd.DataFrame(rows)


def _write(tmp_path: Path, name: str, df: pd.DataFrame) -> str:
    path = tmp_path / f"{name}.csv"
    df.to_csv(path, index=False)
    return str(path)


def test_a_run_against_itself_is_identical_and_agrees(tmp_path: Path) -> None:
    a = _write(tmp_path, "a", _results(0.15, 0.0, 0))
    text, agree = compare_grids.report(a, a, ("native", "again"))
    assert agree and "12 in common, 12 identical in every metric" in text
    assert "| test accuracy | 12 | 12 | 0.00 | 0.00 |" in text


def test_recipe_selection_is_compared_when_both_runs_have_it(tmp_path: Path) -> None:
    for name, val, chosen in (("a", 0.30, "adam_1e-3"), ("b", 0.31, "adam_enc_1e-4")):
        folder = tmp_path / name
        folder.mkdir()
        _write(folder, "results", _results(0.15, 0.0, 0))
        pd.DataFrame([{"dataset": "d", "method": "random", "recipe": r, "label_fraction": 0.1, "repeat": 0,
                       "best_val_accuracy": val if r == "adam_1e-3" else 0.2, "chosen": r == chosen}
                      for r in ("adam_1e-3", "adam_enc_1e-4")]).to_csv(folder / "selection.csv", index=False)
    text, _ = compare_grids.report(str(tmp_path / "a" / "results.csv"), str(tmp_path / "b" / "results.csv"), ("a", "b"))
    assert "2 selection runs in common; best validation accuracy bit-identical in 1, largest difference 1.00 points" in text
    assert "**different**" in text


def test_small_noise_keeps_the_conclusions_and_is_measured(tmp_path: Path, monkeypatch, capsys) -> None:
    a = _write(tmp_path, "a", _results(0.15, 0.0, 0))
    b = _write(tmp_path, "b", _results(0.15, 0.005, 1))
    text, agree = compare_grids.report(a, b, ("native", "avx2"))
    assert agree and "0 identical in every metric" in text
    largest = float(text.split("| test accuracy | 12 | 0 | ")[1].split(" |")[0])
    assert 0 < largest < 3  # points: 0.5-point noise, at most a few standard deviations
    png = tmp_path / "side_by_side.png"
    assert _cli(monkeypatch, "compare", a, b, "--png", str(png)) == 0
    assert "Every conclusion the same: **yes**" in capsys.readouterr().out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_a_lost_ssl_gain_is_a_changed_conclusion(tmp_path: Path, monkeypatch) -> None:
    a = _write(tmp_path, "a", _results(0.15, 0.0, 0))
    b = _write(tmp_path, "b", _results(0.0, 0.0, 0))
    text, agree = compare_grids.report(a, b, ("native", "avx2"))
    assert not agree and "| **no** |" in text and "Every conclusion the same: **no**" in text
    assert _cli(monkeypatch, "compare", a, b, "--names", '["native", "avx2"]') == 1


def test_the_fair_baseline_check_reads_validation_when_both_runs_have_it(tmp_path: Path) -> None:
    """On test the baseline beats its probe in both runs; on validation it does not in run B: validation decides,
    and the conclusions no longer agree. Results without a validation probe fall back to test, and say so."""
    a = _results(0.15, 0.0, 0)
    a["best_val_accuracy"], a["val_linear_probe_accuracy"] = a["test_accuracy"], a["test_accuracy"] - 0.05
    b = a.copy()
    b.loc[b["method"] == "random", "val_linear_probe_accuracy"] = b["test_accuracy"] + 0.05
    text, agree = compare_grids.report(_write(tmp_path, "a", a), _write(tmp_path, "b", b), ("a", "b"))
    assert "Fair-baseline check on the validation split" in text and not agree
    assert "| `d` | 10 % | yes | no |" in text
    old = _write(tmp_path, "old", _results(0.15, 0.0, 0))
    text, agree = compare_grids.report(old, old, ("a", "b"))
    assert "on the test split (these results have no validation probe)" in text and agree


def test_runs_of_different_presets_are_refused(tmp_path: Path) -> None:
    a = _write(tmp_path, "a", _results(0.15, 0.0, 0))
    other = _results(0.15, 0.0, 0).assign(dataset="other")
    with pytest.raises(CryoDataError, match="no cell in common"):
        compare_grids.report(a, _write(tmp_path, "b", other), ("a", "b"))


@pytest.mark.parametrize("command, usage", [("compare", "cryomonai compare A B <flags>"),
                                            ("ship-weights", "cryomonai ship-weights GRID NAME <flags>")])
def test_cli_help_of_compare_and_ship_weights(command, usage, monkeypatch, capfd):
    monkeypatch.setenv("PAGER", "cat")
    assert _cli(monkeypatch, command, "--help") == 0
    err = capfd.readouterr().err  # fire writes help to stderr
    assert usage in err and "FLAGS" in err, err[-2000:]


def test_ship_weights_chooses_on_validation_only():
    """The repeat with the best mean validation accuracy wins, whatever its test accuracy; its largest fraction ships."""
    from cryomonai.experiment.ship import choose

    rows = [{"method": "simclr", "repeat": r, "pretrain_seed": r, "label_fraction": f, "best_val_accuracy": v,
             "test_accuracy": t} for r, v, t in ((0, 0.4, 0.9), (1, 0.5, 0.1)) for f in (0.1, 1.0)]
    cell, ranking = choose(pd.DataFrame(rows), "simclr")
    assert cell["repeat"] == 1 and cell["label_fraction"] == 1.0 and list(ranking["repeat"]) == [1, 0]
    with pytest.raises(ConfigError, match="--method: results.csv has no rows of method 'moco'"):
        choose(pd.DataFrame(rows), "moco")
