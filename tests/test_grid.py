"""The experiment grid end to end (tiny): every cell through the bundle, results.csv, resume."""

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cryomonai.errors import ConfigError
from cryomonai.experiment.grid import RESULT_COLUMNS, GridPreset, grid_cells, load_preset, run_grid
from test_progress import STAMP, captured_lines


def _tiny(**kw) -> GridPreset:
    spec = dict(
        name="tiny",
        datasets=[{"name": "snr_1", "snr": 1.0, "n_per_class": 5, "box": 8, "binning": 2, "classes": ["1bxn", "1qvr", "3cf3"],
                   "max_shift": 1.0, "n_neighbours": 1, "workers": 0}],
        methods=["random", "moco"], label_fractions=[0.5, 1.0], repeats=2, seed=3,
        common={"batch_size": 4}, pretrain={"epochs": 1}, finetune={"epochs": 1}, report={"gradcam_examples": 2},
        recipes={"fast": {"lr": 0.01}, "slow": {"lr": 0.0001, "epochs": 2}}, selection_fractions=[1.0],
    )
    spec.update(kw)
    return GridPreset(**spec)


def test_presets_load_and_enumerate():
    for name in ("cpu", "cpu_full", "paper", "label_efficiency"):
        p = load_preset(name)
        cells = list(grid_cells(p))
        assert len(cells) == len(p.datasets) * len(p.methods) * len(p.label_fractions) * p.repeats
        assert "random" in p.methods and len(p.recipe_overrides()) >= 2  # every arm chooses its recipe
        assert p.repeats >= 3  # independent pretraining seeds
    paper = load_preset("paper")
    assert paper.repeats == 5 and len(paper.datasets) == 3 and paper.label_fractions == [0.25, 0.5, 0.75, 1.0]
    assert 0.1 in load_preset("cpu").label_fractions  # the frozen-feature probe at 10 % labels
    big = load_preset("label_efficiency")
    n = big.datasets[0]["n_per_class"] * 10
    assert n * 0.2 >= 1000 and n * 0.6 >= 4000 and 0.01 in big.label_fractions  # >= 1,000 test subtomograms
    # fine-tuning takes at least the selection fraction's optimizer steps at every fraction (min_steps)
    per_epoch = -(-round(n * 0.6 * big.selection_fractions[0]) // big.common["batch_size"])
    assert big.finetune["min_steps"] == per_epoch * big.finetune["epochs"] == 600
    with pytest.raises(ConfigError, match="grid preset not found"):
        load_preset("nosuchpreset")
    with pytest.raises(ConfigError, match="outside"):
        _tiny(label_fractions=[0.0, 1.0])


def test_cpu_full_inherits_the_cpu_preset():
    """``cpu_full`` is ``{"base": "cpu"}`` plus its differences: the main job's protocol with more fractions
    and pretraining epochs — the same data, arms, repeats, augmentation, fine-tuning, recipe space and
    selection fractions (the 100 % cells train with the mean winner over 10 and 25 %). Merged, it is the
    cpu preset with those two keys changed."""
    import json

    from cryomonai.experiment.preset import preset_dir

    quick, full = load_preset("cpu"), load_preset("cpu_full")
    assert json.loads((preset_dir() / "cpu_full.json").read_text())["base"] == "cpu"
    differ = {k for k in quick.__dataclass_fields__ if getattr(quick, k) != getattr(full, k)}
    assert differ == {"name", "label_fractions", "pretrain"}
    old = json.loads((preset_dir() / "cpu.json").read_text())
    old.pop("description")
    old.update(label_fractions=[0.1, 0.25, 1.0], selection_fractions=[0.1, 0.25])
    old["pretrain"]["epochs"] = 50
    assert full == GridPreset(name="cpu_full", **old)
    assert full.workers == 2 and list(full.recipes) == list(quick.recipes)


def test_ssl_methods_inherits_through_cpu_full():
    """``ssl_methods`` → ``cpu_full`` → ``cpu``: the per-method pretraining settings live in cpu.json alone;
    ``null`` removes a key (one recipe, no selection fractions)."""
    ssl, cpu, full = load_preset("ssl_methods"), load_preset("cpu"), load_preset("cpu_full")
    assert ssl.pretrain_by_method == cpu.pretrain_by_method and ssl.pretrain == full.pretrain
    assert ssl.recipes == {} and ssl.selection_fractions is None and ssl.workers == 1
    assert "val_interval" not in ssl.finetune and ssl.finetune["epochs"] == 5
    assert ssl.finetune["optimizer"] == cpu.finetune["optimizer"]


def test_preset_descriptions_are_one_line():
    import json

    from cryomonai.experiment.preset import preset_dir

    for path in preset_dir().glob("*.json"):
        text = json.loads(path.read_text())["description"]
        assert len(text) <= 200 and "\n" not in text, path.name


def _write_preset(folder: Path, name: str, **spec) -> Path:
    import json

    path = folder / f"{name}.json"
    path.write_text(json.dumps(spec))
    return path


def test_a_preset_chain_merges_dicts_and_replaces_lists(tmp_path):
    """A base chain of files (a name or a path relative to the file): dicts merge, lists replace, null removes."""
    _write_preset(tmp_path, "c", base="cpu", repeats=2, pretrain={"epochs": 2}, common={"batch_size": 8})
    _write_preset(tmp_path, "b", base="c.json", label_fractions=[1.0], selection_fractions=None, workers=None)
    top = load_preset(_write_preset(tmp_path, "a", base="b.json", pretrain={"lr": 0.01}))
    cpu = load_preset("cpu")
    assert top.name == "a" and top.repeats == 2 and top.label_fractions == [1.0] and top.selection_fractions is None
    assert top.pretrain == {**cpu.pretrain, "epochs": 2, "lr": 0.01}  # merged through the chain
    assert top.common == {**cpu.common, "batch_size": 8} and top.workers == 1  # null: the default
    assert top.datasets == cpu.datasets and top.recipes == cpu.recipes


def test_a_preset_base_cycle_or_unknown_base_is_a_config_error(tmp_path):
    _write_preset(tmp_path, "x", base="y.json", repeats=1)
    _write_preset(tmp_path, "y", base="x.json")
    with pytest.raises(ConfigError, match=r"key 'base'.*cycle \(x.json -> y.json -> x.json\)") as err:
        load_preset(tmp_path / "x.json")
    assert "\n" not in str(err.value) and "fix:" in str(err.value)
    _write_preset(tmp_path, "self", base="self.json")
    with pytest.raises(ConfigError, match="cycle"):
        load_preset(tmp_path / "self.json")
    with pytest.raises(ConfigError, match=r"z.json, key 'base': base preset 'nosuch' not found"):
        load_preset(_write_preset(tmp_path, "z", base="nosuch"))


@pytest.fixture(scope="module")
def tiny_grid(tmp_path_factory):
    """The tiny grid's first 7 cells, recording every bundle run (run id, split, run folder) in order, and its log lines."""
    import cryomonai.experiment.training as training

    out = tmp_path_factory.mktemp("grid")
    calls, real = [], training.run_bundle

    def recording(run_id, *args, **kw):
        calls.append((run_id, kw.get("validate#split"), kw.get("ckpt_dir", ""), kw.get("seed"), kw.get("lr")))
        return real(run_id, *args, **kw)

    with pytest.MonkeyPatch.context() as mp, captured_lines() as lines:
        mp.setattr(training, "run_bundle", recording)  # where the grid looks it up
        first = run_grid(_tiny(), out, report=True, progress=False, max_cells=7)  # no final report: cells missing
    return out, first, calls, lines


def _runs(lines: list[str]) -> list[str]:
    """The ``k/n runs`` of the grid's progress lines."""
    return [m.group(1) for line in lines if (m := re.search(r"\] (\d+/\d+) runs, ETA ", line))]


def test_interim_report_after_the_first_finished_repeat(tiny_grid):
    """7 of 8 cells: repeat 0 (4 cells) is finished, repeat 1 is not — an interim report of repeat 0 only."""
    out, first, *_ = tiny_grid
    assert not (out / "table.md").exists() and not (out / "summary.json").exists()
    interim = out / "interim"
    table = (interim / "table.md").read_text()
    assert table.startswith("> **Interim report: 1 of 2 repeats finished.**") and "no t-test yet" in table
    assert "| 50 |" in table and "| 100 |" in table and "p=n/a" in table
    rows = pd.read_csv(interim / "results.csv")
    assert len(rows) == 4 and set(rows["repeat"]) == {0}
    pd.testing.assert_frame_equal(rows.drop(columns="run_dir"), first[first["repeat"] == 0].drop(columns="run_dir"))
    assert all(Path(d).is_absolute() and (Path(d) / "eval" / "predictions_test.csv").is_file() for d in rows["run_dir"])
    assert sorted(p.name for p in interim.glob("*.png")) == [
        "accuracy_vs_labels.png", "confusion_snr_1_f0.5.png", "confusion_snr_1_f1.png", "gain_over_baseline.png"]


def test_recipes_chosen_on_validation_before_the_test_split_is_read(tiny_grid):
    """Every arm's recipe comes from validation runs only; the test split is read once per reported
    cell, after its arm's selection, and never for a recipe that was not chosen."""
    out, first, calls, _ = tiny_grid
    selection = pd.read_csv(out / "selection.csv")
    assert sorted(selection["recipe"].unique()) == ["fast", "slow"] and set(selection["method"]) == {"random", "moco"}
    assert len(selection) == 4 and selection["label_fraction"].eq(1.0).all() and selection["repeat"].eq(0).all()
    for method, block in selection.groupby("method"):
        best = block.loc[block["best_val_accuracy"].idxmax(), "recipe"]
        ties = block[block["best_val_accuracy"] == block["best_val_accuracy"].max()]
        assert block["chosen"].sum() == 1 and block.loc[block["chosen"], "recipe"].iloc[0] == ties["recipe"].iloc[0]
        assert (first.loc[first["method"] == method, "recipe"] == best).all() or len(ties) > 1
    tests = [c for c in calls if c[0] == "evaluate" and c[1] == "test"]
    assert len(tests) == len(first) == len({c[2] for c in tests})  # once per cell
    first_test = calls.index(tests[0])
    assert all(i < first_test for i, c in enumerate(calls) if c[0] == "finetune" and "/f100_r0" in c[2])
    not_chosen = set(selection.loc[~selection["chosen"], "run_dir"])
    assert not any(any(c[2].startswith(str(out / d)) for d in not_chosen) for c in tests)
    # a recipe's overrides reach the bundle: both learning rates were trained with
    assert {c[4] for c in calls if c[0] == "finetune"} == {0.01, 0.0001}


def test_ssl_repeats_pretrain_independently(tiny_grid):
    """Each repeat of an SSL arm has its own pretraining run and seed (so the t-test includes pretraining)."""
    out, first, calls, _ = tiny_grid
    pretrains = [c for c in calls if c[0] == "pretrain"]
    assert sorted(c[3] for c in pretrains) == [3, 4]  # seed + repeat, one run each
    moco = first[first["method"] == "moco"]
    assert sorted(moco["pretrain_seed"].unique()) == [3, 4] and (moco["pretrain_seed"] == moco["seed"]).all()
    assert first.loc[first["method"] == "random", "pretrain_seed"].isna().all()
    for seed in (3, 4):
        assert (out / "pretrain" / "snr_1" / "moco" / f"s{seed}" / "models" / "pretrain.pt").is_file()


def test_tiny_grid_runs_every_cell_and_resumes(tiny_grid):
    out, first, *_ = tiny_grid
    assert len(first) == 7 and list(first.columns) == RESULT_COLUMNS
    rows_before = (out / "results.csv").read_text()
    selection_before = (out / "selection.csv").read_text()
    with captured_lines() as lines:
        results = run_grid(_tiny(), out, report=False, progress=False)  # resumes: only the 8th cell runs
    assert _runs(lines) == ["1/2", "2/2"]  # its fine-tuning and its evaluation
    assert (out / "selection.csv").read_text() == selection_before  # the recipes are not chosen again
    assert len(results) == 8
    assert (out / "results.csv").read_text().startswith(rows_before)
    assert set(results["method"]) == {"random", "moco"} and sorted(set(results["label_fraction"])) == [0.5, 1.0]
    # the same labelled subset for every method of a repeat, nested across fractions
    n = results.groupby(["label_fraction", "repeat"])["n_labelled"].agg(["min", "max"])
    assert (n["min"] == n["max"]).all() and n.loc[(0.5, 0), "max"] < n.loc[(1.0, 0), "max"]
    for col in ("best_val_accuracy", "test_accuracy", "linear_probe_accuracy", "knn_accuracy", "val_linear_probe_accuracy",
                "deployed_test_accuracy"):
        assert results[col].between(0, 1).all()
    # the deployed classifier: the probe where it beats the fine-tuned model on validation, with its test accuracy
    probe = results["val_linear_probe_accuracy"] > results["best_val_accuracy"]
    assert (results["deployed"] == np.where(probe, "probe", "finetune")).all()
    assert np.allclose(results["deployed_test_accuracy"],
                       np.where(probe, results["linear_probe_accuracy"], results["test_accuracy"]))
    pre = results.loc[results.method == "moco", "pretrain_seconds"]
    assert (pre > 0).all() and results.loc[results.method == "random", "pretrain_seconds"].isna().all()
    from cryomonai.data import label_subset
    from cryomonai.data import read_labelled_rows
    from cryomonai.io import read_particle_table
    from cryomonai.layout import RunLayout

    table = read_particle_table(out / "data" / "snr_1" / "particles.star").df
    train = np.flatnonzero(table["split"].to_numpy() == "train")
    for row in results.itertuples():
        run = RunLayout(out / row.run_dir)
        assert run.finetune_best.is_file() and (run.eval / "predictions_test.csv").is_file()
        # the readouts use the rows the fine-tuning saved: the nested stratified subset of the training split
        rows = read_labelled_rows(run.labelled_rows)
        expected = train[label_subset(table["label_index"].to_numpy()[train], row.label_fraction, row.repeat)]
        assert len(rows) == row.n_labelled and sorted(rows) == sorted(expected)
    # a finished grid reruns nothing
    again = run_grid(_tiny(), out, report=False, progress=False)
    pd.testing.assert_frame_equal(again, results)


def test_the_grid_counts_its_runs_and_logs_an_eta_for_each(tiny_grid):
    """7 of 8 cells: 2 pretrainings, 4 selection runs (2 arms × 2 recipes), 5 cell fine-tunings (the 2
    cells at the selection fraction were trained as selection runs) and 7 evaluations: 18 runs. Off a
    terminal, one timestamped line per finished run with the ETA; the grid's other lines as before."""
    out, *_, lines = tiny_grid
    assert _runs(lines) == [f"{k}/18" for k in range(1, 19)]
    # what a resumed invocation's ETA starts from: every run of every invocation so far (other tests may
    # have resumed this grid: one evaluation per cell in results.csv, and its fine-tunings, two selection runs
    # of the other recipe among them)
    pace = json.loads((out / "progress.json").read_text())
    cells = len(pd.read_csv(out / "results.csv"))
    assert {k: v["runs"] for k, v in pace["kinds"].items()} == {"pretrain": 2, "finetune": cells + 2, "evaluate": cells}
    assert pace["elapsed"] > 0 and pace["kinds"]["pretrain"]["seconds"] > 0
    progress = [line for line in lines if " runs, ETA " in line]
    assert all(re.match(rf"{STAMP} INFO cryomonai.experiment.progress: \[grid tiny\] \d+/18 runs, ETA \d\d:\d\d "
                        r"(\+\d+d )?\(\d+:\d\d:\d\d left\): ", line) for line in progress), progress
    assert progress[0].endswith("pretrain moco on snr_1, seed 3")  # the scheduler's order: repeat 0's pretraining first
    assert "(0:00:00 left): evaluate " in progress[-1]
    assert any("INFO cryomonai.experiment.grid: [grid tiny] cell 1/8: " in line for line in lines)
    assert any("[grid tiny] recipe selection: " in line for line in lines)


def test_tiny_grid_report(tiny_grid):
    out, *_ = tiny_grid
    run_grid(_tiny(), out, report=True, progress=False)
    assert not (out / "interim").exists()  # the final report replaces the interim one
    for name in ("table.md", "accuracy_vs_labels.png", "embedding_before_after.png", "gradcam.png", "summary.json",
                 "ttest_test_accuracy.csv", "stats_test_accuracy.csv", "report.html"):
        assert (out / name).is_file(), name
    assert sorted(p.name for p in out.glob("confusion_*.png")) == ["confusion_snr_1_f0.5.png", "confusion_snr_1_f1.png"]
    table = (out / "table.md").read_text()
    assert "| 50 |" in table and "| 100 |" in table and "±" in table
    assert "Fair-baseline check" in table and "Random features, probe (val)" in table and "margins per repeat" in table
    # issue 26's sections: statistics with Holm, every arm vs its own probe, the deployed classifier, the edge flag
    for section in ("## Statistics: every arm vs Random init", "| Holm Student | Holm Welch | Holm paired |",
                    "## Fine-tuned vs its own frozen-feature probe (validation)", "## Deployed classifier",
                    "**At the edge: widen the space.**"):
        assert section in table, section
    page = (out / "report.html").read_text()  # the same table, the figures and a link per cell (test_report_html.py)
    assert "Fair-baseline check" in page and page.count('class="cell" href="cells/') == len(pd.read_csv(out / "results.csv"))
    assert "## Fine-tuning recipe per arm" in table and '`{"epochs": 2, "lr": 0.0001}`' in table
    results = pd.read_csv(out / "results.csv")
    # where the time went: one row per step the grid ran, every phase in the timing table
    timings = pd.read_csv(out / "timings.csv")
    counts = timings["phase"].value_counts()
    n_selection = len(pd.read_csv(out / "selection.csv"))
    assert counts["data"] == 1 and counts["pretrain"] == 2 and counts["report"] == 1
    assert counts["evaluate_test"] == counts["readouts"] == len(results) == 8
    # every cell fine-tuned once (a chosen recipe's selection run is its repeat-0 cell), plus the non-chosen recipes
    assert counts["finetune"] == len(results) + n_selection // 2
    assert (timings[["setup_seconds", "compute_seconds"]] >= 0).all().all()
    for phase in ("pretrain", "finetune", "evaluate_test"):
        block = timings[timings["phase"] == phase]
        assert (block["compute_seconds"] > 0).all() and (block["setup_seconds"] > 0).all(), phase
    timing = (out / "timing.md").read_text()
    for phase in ("data", "pretrain", "finetune", "evaluate_val", "evaluate_test", "readouts", "report", "**all**"):
        assert f"| {phase} |" in timing, phase
    assert "Wall time of the run that finished the grid" in timing and "at a time" not in timing  # serial
    import scipy.stats

    ttest = pd.read_csv(out / "ttest_test_accuracy.csv")
    assert len(ttest) == 2  # moco vs random at 2 fractions
    for row in ttest.itertuples():
        cell = results[results.label_fraction == row.label_fraction]
        a = cell.loc[cell.method == "moco", "test_accuracy"].to_numpy()
        b = cell.loc[cell.method == "random", "test_accuracy"].to_numpy()
        assert len(a) == len(b) == 2 and np.isclose(row.mean, a.mean())
        if np.var(a) + np.var(b) > 0:
            assert np.isclose(row.p, scipy.stats.ttest_ind(a, b).pvalue)
        else:
            assert np.isnan(row.p)


def test_report_of_a_grid_without_the_random_baseline(tmp_path):
    """One SSL method alone (e.g. comparing two settings of it): the report is written, t-tests say why not."""
    preset = _tiny(methods=["simclr"], label_fractions=[1.0], repeats=2, recipes={})
    results = run_grid(preset, tmp_path, report=True, progress=False)
    assert set(results["method"]) == {"simclr"} and len(results) == 2
    for name in ("table.md", "gradcam.png", "embedding_before_after.png", "summary.json"):
        assert (tmp_path / name).is_file(), name
    assert not (tmp_path / "gain_over_baseline.png").exists()  # no baseline, no gain over it (it drew "+nan")
    assert "±" in (tmp_path / "table.md").read_text()
    # gradcam_examples 0: the report without its Grad-CAM figure (it used to fail stacking no volumes)
    (tmp_path / "gradcam.png").unlink()
    run_grid(_tiny(methods=["simclr"], label_fractions=[1.0], repeats=2, recipes={}, report={"gradcam_examples": 0}),
             tmp_path, report=True, progress=False)
    assert (tmp_path / "embedding_before_after.png").is_file() and not (tmp_path / "gradcam.png").exists()


def test_cli_reports_a_bundle_error_in_one_line(tmp_path, monkeypatch, capsys):
    """A CryoDataError raised inside a bundle expression (wrapped by MONAI in RuntimeError) reaches
    the user as one line and exit status 2, not a traceback."""
    import json

    from cryomonai import cli

    preset = tmp_path / "bad.json"
    preset.write_text(json.dumps({"datasets": [{"name": "x", "snr": 1.0, "n_per_class": 2, "box": 8, "classes": ["nosuch"],
                                                "workers": 0}], "methods": ["random"], "repeats": 1, "label_fractions": [1.0]}))
    monkeypatch.setattr("sys.argv", ["cryomonai", "grid", "--preset", str(preset), "--out", str(tmp_path / "g")])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown template id(s) ['nosuch']" in err[0] and "fix:" in err[0]


@pytest.mark.parametrize("argv", [["grid", "--help"], ["demo", "-h"], ["grid", "--preset", "cpu", "--help"]])
def test_cli_help_of_a_command_with_overrides(argv, monkeypatch, capfd):
    """``--help`` shows the command's flags (fire would otherwise pass it to ``**overrides`` as a preset key)."""
    from cryomonai import cli

    monkeypatch.setattr("sys.argv", ["cryomonai", *argv])
    monkeypatch.setenv("PAGER", "cat")
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code == 0
    err = capfd.readouterr().err  # fire writes help to stderr
    assert f"cryomonai {argv[0]}" in err and "FLAGS" in err and "--out=OUT" in err, err[-2000:]


def test_cli_top_level_help_lists_the_commands(monkeypatch, capfd):
    from cryomonai import cli

    monkeypatch.setattr("sys.argv", ["cryomonai", "--help"])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    err = capfd.readouterr().err
    assert exit_info.value.code == 0 and "COMMANDS" in err and all(name in err for name in cli.COMMANDS)


def test_equal_validation_accuracies_tie_to_the_first_declared_recipe(tmp_path):
    """0.155 + 0.29 and 0.165 + 0.28 differ in floating point; the means are equal, so the first recipe wins."""
    from cryomonai.experiment.grid import SELECTION_COLUMNS, GridRunner

    preset = _tiny(recipes={"first": {}, "second": {"lr": 0.1}}, selection_fractions=[0.5, 1.0])
    runner = GridRunner(preset, tmp_path, progress=False)
    rows = [("first", 0.5, 0.155), ("first", 1.0, 0.29), ("second", 0.5, 0.165), ("second", 1.0, 0.28)]
    pd.DataFrame([{"dataset": "snr_1", "method": "random", "recipe": r, "label_fraction": f, "repeat": 0,
                   "pretrain_seed": np.nan, "best_val_accuracy": v, "chosen": False, "run_dir": "x"} for r, f, v in rows],
                 columns=SELECTION_COLUMNS).to_csv(runner.layout.selection, index=False)
    choice = runner.choose_recipe("snr_1", "random")  # nothing to run: every selection row is there
    assert set(choice.values()) == {"first"} and set(choice) == {round(f, 6) for f in preset.label_fractions}
    assert runner.tables.selection().query("recipe == 'first'")["chosen"].astype(bool).all()


def test_choose_per_fraction_takes_each_fractions_validation_winner(tmp_path):
    """``choose_per_fraction``: 'second' wins at 50 % and 'first' at 100 % on validation (and 'first' on the mean);
    a label fraction outside the selection takes the mean's winner; selection.csv marks each fraction's choice."""
    from cryomonai.experiment.grid import SELECTION_COLUMNS, GridRunner

    preset = _tiny(recipes={"first": {}, "second": {"lr": 0.1}}, label_fractions=[0.25, 0.5, 1.0], selection_fractions=[0.5, 1.0],
                   choose_per_fraction=True)
    runner = GridRunner(preset, tmp_path, progress=False)
    rows = [("first", 0.5, 0.15), ("first", 1.0, 0.40), ("second", 0.5, 0.20), ("second", 1.0, 0.30)]
    pd.DataFrame([{"dataset": "snr_1", "method": "random", "recipe": r, "label_fraction": f, "repeat": 0,
                   "pretrain_seed": np.nan, "best_val_accuracy": v, "chosen": False, "run_dir": "x"} for r, f, v in rows],
                 columns=SELECTION_COLUMNS).to_csv(runner.layout.selection, index=False)
    choice = runner.choose_recipe("snr_1", "random")
    assert choice[0.5] == "second" and choice[1.0] == "first"
    assert choice[0.25] == "first"
    marked = runner.tables.selection().query("chosen == True")
    assert sorted(zip(marked["recipe"], marked["label_fraction"])) == [("first", 1.0), ("second", 0.5)]
    runner.preset.choose_per_fraction = False  # the default: one recipe for every fraction, the mean's winner
    assert set(runner.choose_recipe("snr_1", "random").values()) == {"first"}
    assert set(runner.tables.selection().query("chosen == True")["recipe"]) == {"first"}


def test_a_grid_choosing_per_fraction_trains_each_cell_with_its_fractions_recipe(tmp_path):
    """End to end (random init alone, 2 repeats): each cell's recipe is its fraction's choice in selection.csv,
    and repeat 0's cells reuse the selection run of that recipe instead of training again."""
    preset = _tiny(methods=["random"], repeats=2, readouts=False, selection_fractions=[0.5, 1.0], choose_per_fraction=True,
                   recipes={"fast": {"lr": 0.05}, "slow": {"lr": 1e-6}})
    results = run_grid(preset, tmp_path, report=False, progress=False)
    selection = pd.read_csv(tmp_path / "selection.csv")
    chosen = selection[selection["chosen"].astype(bool)]
    assert sorted(chosen["label_fraction"]) == [0.5, 1.0]  # one choice per fraction
    for frac, recipe in zip(chosen["label_fraction"], chosen["recipe"]):
        best = selection[selection["label_fraction"] == frac].sort_values("best_val_accuracy", ascending=False).iloc[0]
        assert recipe == best["recipe"] or np.isclose(best["best_val_accuracy"],
                                                      selection.query("label_fraction == @frac and recipe == @recipe")["best_val_accuracy"].iloc[0])
        cells = results[results["label_fraction"] == frac]
        assert set(cells["recipe"]) == {recipe} and len(cells) == 2
        assert cells.query("repeat == 0")["run_dir"].iloc[0] == chosen.query("label_fraction == @frac")["run_dir"].iloc[0]
    # 2 recipes x 2 fractions at repeat 0 (selection), + repeat 1's two cells; nothing else trained
    assert len(set(selection["run_dir"]) | set(results["run_dir"])) == 4 + 2
    timings = pd.read_csv(tmp_path / "timings.csv")
    assert (timings["phase"] == "finetune").sum() == 6


def test_parallel_workers_and_the_debug_executor_compute_the_serial_grid(tmp_path):
    """``workers`` 2: the training runs happen in two spawned processes, the rest here. With one thread
    everywhere (so that floating point cannot differ), every number, the recipes, the rows' order and
    the interim report are the serial grid's; every training run is timed once; and no test split is
    read before every arm's recipe is chosen."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with captured_lines() as lines:
            serial = run_grid(_tiny(), tmp_path / "serial", report=False, progress=False)
            parallel = run_grid(_tiny(workers=2), tmp_path / "parallel", report=True, progress=False)
            debug = run_grid(_tiny(executor={"kind": "debug"}), tmp_path / "debug", report=False, progress=False)
    finally:
        torch.set_num_threads(threads)
    # each grid: 2 pretrainings, 4 selection runs, 6 cell fine-tunings, 8 evaluations, counted as they finish
    assert _runs(lines) == [f"{k}/20" for k in range(1, 21)] * 3
    numbers = ["dataset", "method", "label_fraction", "repeat", "recipe", "n_labelled", "best_val_accuracy",
               "test_accuracy", "linear_probe_accuracy", "knn_accuracy", "run_dir"]
    pd.testing.assert_frame_equal(parallel[numbers], serial[numbers])
    # submitit's debug executor (every run a "job" in this process, as the slurm executor's path) too
    pd.testing.assert_frame_equal(debug[numbers], serial[numbers])
    assert (tmp_path / "debug" / "jobs").is_dir() and not (tmp_path / "debug" / "jobs.csv").exists()
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "parallel" / "selection.csv"),
                                  pd.read_csv(tmp_path / "serial" / "selection.csv"))
    timings = pd.read_csv(tmp_path / "parallel" / "timings.csv")
    counts, expected = timings["phase"].value_counts(), pd.read_csv(tmp_path / "serial" / "timings.csv")["phase"].value_counts()
    for phase in ("data", "pretrain", "finetune", "evaluate_val", "evaluate_test", "readouts"):
        assert counts[phase] == expected[phase], phase
    phases = list(timings["phase"])
    n_selection = len(pd.read_csv(tmp_path / "parallel" / "selection.csv"))
    assert phases.index("evaluate_test") > [i for i, p in enumerate(phases) if p == "evaluate_val"][n_selection - 1]
    assert (tmp_path / "parallel" / "table.md").is_file() and not (tmp_path / "parallel" / "interim").exists()
    assert '"workers": 2' in (tmp_path / "parallel" / "preset.json").read_text()
    assert "ran 2 at a time in worker processes" in (tmp_path / "parallel" / "timing.md").read_text()


@pytest.mark.parametrize("workers", [0, -1, 1.5, True, "2"])
def test_workers_must_be_a_whole_number_of_processes(workers):
    with pytest.raises(ConfigError, match="workers"):
        _tiny(workers=workers)


@pytest.mark.parametrize("section, match", [({"kind": "pbs"}, "kind='pbs'"), ({"cpus_per_job": 0}, "cpus_per_job"),
                                            ({"partiton": "gpu"}, "unknown keys")])
def test_a_bad_executor_section_is_a_one_line_error(section, match):
    with pytest.raises(ConfigError, match=match) as err:
        _tiny(executor=section)
    assert "\n" not in str(err.value)


def test_executor_section_becomes_sbatch_parameters():
    from cryomonai.experiment.executors import ExecutorSpec

    spec = ExecutorSpec.from_dict({"kind": "slurm", "partition": "gpu", "account": "lab", "gpus_per_job": 1,
                                   "cpus_per_job": 8, "mem_gb": 32, "time_min": 240, "sbatch": {"constraint": "a100"},
                                   "nodes": 2, "tasks_per_node": 4})
    one = spec.slurm_parameters("cryomonai-finetune", distributed=False)
    assert one == {"name": "cryomonai-finetune", "timeout_min": 240, "cpus_per_task": 8, "nodes": 1, "tasks_per_node": 1,
                   "gpus_per_node": 1, "mem_gb": 32, "slurm_partition": "gpu", "slurm_account": "lab",
                   "slurm_additional_parameters": {"constraint": "a100"}}
    ddp = spec.slurm_parameters("cryomonai-pretrain", distributed=True)
    assert ddp["nodes"] == 2 and ddp["tasks_per_node"] == 4


def test_cli_grid_takes_executor_options(tmp_path, monkeypatch):
    """``cryomonai grid --executor slurm --partition gpu …`` lands in the preset's executor section."""
    from cryomonai import cli
    from cryomonai.experiment import grid as grid_module

    seen = {}
    monkeypatch.setattr(grid_module, "run_grid", lambda preset, out, **kw: seen.setdefault("preset", preset))
    cli.grid("cpu", out=str(tmp_path), executor="slurm", partition="gpu", time_min=30, repeats=1)
    assert seen["preset"].executor == {"kind": "slurm", "partition": "gpu", "time_min": 30}
    assert seen["preset"].repeats == 1


def test_a_job_run_takes_its_threads_from_slurm_and_reports_its_times(monkeypatch):
    """Inside a SLURM job, a run's threads follow ``SLURM_CPUS_PER_TASK``; it returns the bundle's seconds
    plus when it started and finished (``jobs.csv``'s overhead columns)."""
    import torch

    from cryomonai.experiment.executors import TrainRun
    from cryomonai.experiment.graph import Job

    seen = {}

    class FakeRunner:
        def __init__(self, preset, out, progress):
            seen["progress"] = progress

        def train_finetune(self, cell, recipe):
            seen["threads"] = torch.get_num_threads()
            return {"setup": 1.0, "compute": 2.0}

    threads = torch.get_num_threads()
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")
    torch.set_num_threads(2)  # so that the job's 1 is visible
    try:
        out = TrainRun(FakeRunner, _tiny(), "unused", Job("finetune", ("cell", "fast")))()
    finally:
        torch.set_num_threads(threads)
    assert seen == {"progress": False, "threads": 1}
    assert out["setup"] == 1.0 and out["compute"] == 2.0 and out["finished"] >= out["started"]
