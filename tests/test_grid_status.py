"""``cryomonai grid --status`` (cryomonai.experiment.status): where a grid stands, read from its folder; nothing
is trained or written here."""

from __future__ import annotations

import datetime
import json
import os
import re
import socket
import subprocess
import sys
import time
from dataclasses import asdict, replace

import pytest

from cryomonai.cli import main
from cryomonai.errors import ConfigError
from cryomonai.experiment.grid import GridRunner, grid_cells, load_preset
from cryomonai.experiment.status import driver_state, grid_status
from cryomonai.io.lock import LOCK_NAME, FolderLock


def _holder(folder, pid, host=None):
    (folder / LOCK_NAME).write_text(json.dumps({"pid": pid, "host": host or socket.gethostname(),
                                                "started": time.time(), "command": "cryomonai grid"}))


def test_who_holds_the_folder(tmp_path):
    assert driver_state(tmp_path) == "not running"
    with FolderLock(tmp_path):
        assert driver_state(tmp_path).startswith(f"running (pid {os.getpid()} on {socket.gethostname()} since ")
    assert driver_state(tmp_path) == "not running"  # released: the lock file is emptied
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    _holder(tmp_path, gone.pid)  # a killed driver leaves its record behind
    assert driver_state(tmp_path).startswith(f"stopped (pid {gone.pid} ") and "rerun the same command" in driver_state(tmp_path)
    _holder(tmp_path, 1, host="node042")
    assert driver_state(tmp_path).startswith("held by pid 1 on node042") and "another machine" in driver_state(tmp_path)


def test_the_status_counts_what_is_left_and_prices_it_at_the_grids_pace(tmp_path):
    runner = GridRunner(load_preset("paper"), tmp_path)
    cells = list(grid_cells(runner.preset))
    assert grid_status(runner) == f"grid paper in {tmp_path}: not started"
    (tmp_path / "preset.json").write_text(json.dumps(asdict(runner.preset), default=str))
    lines = grid_status(runner).splitlines()
    assert lines[0] == f"grid paper in {tmp_path}: not running"
    assert lines[1] == f"  cells evaluated: 0 of {len(cells)}"
    assert lines[2] == (f"  runs left: 60 pretrainings, 300 recipe-selection fine-tunings, 240 cell fine-tunings, "
                        f"{len(cells)} cell evaluations ({600 + len(cells)} in all)")
    assert lines[3] == "  time left: not known before its first run finishes"
    # a pretraining done: 100 s of it in 50 s of working time (two workers); every kind priced at 100 s
    done = runner.layout.pretrain_dir(cells[0].dataset, "simclr", runner.preset.seed) / "models" / "pretrain.pt"
    done.parent.mkdir(parents=True)
    done.touch()
    (tmp_path / "progress.json").write_text(json.dumps({"elapsed": 50.0, "kinds": {
        "pretrain": {"seconds": 100.0, "runs": 1}, "finetune": {"seconds": 0.0, "runs": 0}}}))
    finished = time.time() - 3600
    os.utime(tmp_path / "progress.json", (finished, finished))
    lines = grid_status(runner).splitlines()
    left = 599 + len(cells)
    assert lines[2].endswith(f"({left} in all)") and lines[2].startswith("  runs left: 59 pretrainings")
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(finished))
    assert re.fullmatch(rf"  last run finished: {stamp} \(1:00:0\d ago\)", lines[3]), lines[3]
    assert lines[4] == f"  time left: {datetime.timedelta(seconds=50 * left)} of running time at its pace so far (0:00:50 of working time)"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["preset.json", "pretrain", "progress.json"]  # nothing written


def test_a_changed_preset_is_the_error_a_resumed_grid_would_give(tmp_path):
    preset = load_preset("paper")
    (tmp_path / "preset.json").write_text(json.dumps(asdict(preset), default=str))
    with pytest.raises(ConfigError, match="key 'seed'"):
        grid_status(GridRunner(replace(preset, seed=1), tmp_path))


def test_cli_grid_status_prints_and_runs_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("sys.argv", ["cryomonai", "grid", "--preset", "cpu", "--out", str(tmp_path / "g"), "--status"])
    main()
    assert capsys.readouterr().out.splitlines()[0] == f"grid cpu in {tmp_path / 'g'}: not started"
    assert not (tmp_path / "g").exists()
    # without --preset: the grid's own preset.json (here the confirm preset, not the default cpu)
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "preset.json").write_text(json.dumps(asdict(load_preset("confirm")), default=str))
    monkeypatch.setattr("sys.argv", ["cryomonai", "grid", "--out", str(tmp_path / "g"), "--status"])
    main()
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"grid confirm in {tmp_path / 'g'}: not running" and out[1] == "  cells evaluated: 0 of 180"
