"""A resumed grid keeps the preset it started with (cryomonai.experiment.resume); nothing is trained here."""

from __future__ import annotations

import json
from dataclasses import asdict, replace

import pytest

from cryomonai.cli import main
from cryomonai.errors import ConfigError
from cryomonai.experiment.grid import GridRunner, load_preset
from cryomonai.experiment.resume import bundle_digests, check_code, check_resume, code_digests, first_difference
from cryomonai.pipeline import bundle_dir


@pytest.fixture
def started(tmp_path):
    """The confirm preset and a grid folder that started with it."""
    preset = load_preset("confirm")
    (tmp_path / "preset.json").write_text(json.dumps(asdict(preset), indent=2, default=str))
    return preset, tmp_path / "preset.json"


def test_the_first_difference_names_the_key_path():
    assert first_difference({"a": {"b": 1, "c": [1, 2]}}, {"a": {"b": 1, "c": [1, 3]}}) == ("a.c", [1, 2], [1, 3])
    assert first_difference({"a": 1}, {"a": 1, "b": 2}) == ("b", "(absent)", 2)
    assert first_difference({"a": 1}, {"a": 1}) is None


def test_what_a_finished_run_depends_on_may_not_change(started):
    preset, saved = started
    check_resume(saved, preset)  # the same preset resumes
    changed = [
        (replace(preset, finetune={**preset.finetune, "lr": 0.003}), "finetune.lr", "0.001", "0.003"),
        (replace(preset, recipes={**preset.recipes, "sgd": {"lr": 0.1}}), "recipes.sgd", '"(absent)"', '{"lr": 0.1}'),
        (replace(preset, seed=7), "seed", "0", "7"),
        (replace(preset, readouts=False), "readouts", "true", "false"),  # the report's probe checks read every row
        (replace(preset, datasets=[{**preset.datasets[0], "snr": 0.1}, *preset.datasets[1:]]),
         "datasets[snr0.05_a].snr", "0.05", "0.1"),
    ]
    for new, key, was, now in changed:
        with pytest.raises(ConfigError) as err:
            check_resume(saved, new)
        text = str(err.value)
        assert f"key '{key}'" in text and f"ran with {was}, the preset now says {now}" in text, text
        assert "\n" not in text and "new --out" in text


def test_who_runs_it_and_cells_added_may_change(started):
    preset, saved = started
    check_resume(saved, replace(preset, workers=1, executor={"kind": "slurm", "partition": "gpu"}, repeats=5,
                                methods=["random", "simclr"], label_fractions=[0.01, 0.1, 0.5, 1.0], report={},
                                datasets=[*preset.datasets, {"name": "extra", "snr": 0.1, "seed": 9}]))
    old = json.loads(saved.read_text())
    del old["extend_edges"]  # written before the key existed: not compared
    saved.write_text(json.dumps(old))
    check_resume(saved, replace(preset, extend_edges=None))


def test_a_changed_preset_stops_the_grid_before_anything_runs(started, tmp_path, monkeypatch, capsys):
    preset, saved = started
    before = saved.read_text()
    with pytest.raises(ConfigError, match="key 'finetune.epochs'"):
        GridRunner(replace(preset, finetune={**preset.finetune, "epochs": 3}), tmp_path).run()
    assert saved.read_text() == before and sorted(p.name for p in tmp_path.iterdir()) == ["preset.json"]
    # on the command line: one line, exit status 2
    monkeypatch.setattr("sys.argv", ["cryomonai", "grid", "--preset", "confirm", "--out", str(tmp_path), "--seed", "3"])
    with pytest.raises(SystemExit) as code:
        main()
    err = capsys.readouterr().err.strip()
    assert code.value.code == 2 and len(err.splitlines()) == 1 and "key 'seed'" in err, err


def test_a_changed_bundle_config_is_a_warning_naming_the_file(tmp_path, caplog):
    """The grid records its bundle's config digests at its first start and keeps that record; a resume
    after a config file changed warns, naming it, and goes on."""
    digests = bundle_digests(bundle_dir())
    assert "finetune.json" in digests and "common.json" in digests and any(k.startswith("encoders/") for k in digests)
    assert not any(k.startswith("grid/") or k == "metadata.json" for k in digests)
    runner = GridRunner(load_preset("confirm"), tmp_path)
    runner.run(max_cells=0)  # nothing to train: only the folder's records are written
    record = tmp_path / "bundle_configs.json"
    assert json.loads(record.read_text()) == digests
    runner.run(max_cells=0)
    assert "bundle" not in caplog.text
    record.write_text(json.dumps({**digests, "finetune.json": "0" * 16}))  # as if started by an older version
    with caplog.at_level("WARNING", logger="cryomonai"):
        runner.run(max_cells=0)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "bundle" in r.getMessage()]
    assert len(warnings) == 1 and "(finetune.json)" in warnings[0] and "new --out" in warnings[0]
    assert json.loads(record.read_text())["finetune.json"] == "0" * 16  # the first start's record is kept


def test_changed_code_is_a_warning_naming_the_modules(tmp_path, caplog):
    """The grid records a digest of every cryomonai module at its first start; a resume with other code
    (an upgrade, a local fix) warns naming the modules, at most six and a count, and keeps the record."""
    digests = code_digests()
    assert "cryomonai/experiment/resume.py" in digests and "cryomonai/__init__.py" in digests
    assert not any("__pycache__" in k or not k.endswith(".py") for k in digests)
    runner = GridRunner(load_preset("confirm"), tmp_path)
    runner.run(max_cells=0)
    record = tmp_path / "code.json"
    assert json.loads(record.read_text()) == digests
    with caplog.at_level("WARNING", logger="cryomonai"):
        runner.run(max_cells=0)
    assert "code" not in caplog.text
    started = {**digests, "cryomonai/transforms/views.py": "0" * 16}
    started.pop("cryomonai/experiment/status.py")  # a module added since
    record.write_text(json.dumps(started))
    with caplog.at_level("WARNING", logger="cryomonai"):
        runner.run(max_cells=0)
    warnings = [r.getMessage() for r in caplog.records if "cryomonai code" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "(cryomonai/experiment/status.py, cryomonai/transforms/views.py)" in warnings[0]
    assert json.loads(record.read_text()) == started  # the first start's record is kept
    record.write_text(json.dumps({k: "0" * 16 for k in digests}))  # another version altogether
    caplog.clear()
    with caplog.at_level("WARNING", logger="cryomonai"):
        assert len(check_code(record)) == len(digests)
    assert f"and {len(digests) - 6} more)" in caplog.text
