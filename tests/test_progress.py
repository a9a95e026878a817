"""The grid's progress (runs counted, ETA), the ``cryomonai`` logger and ``--log_file``; no training here
(the tiny grid's own progress lines are checked in test_grid.py, on the runs it makes anyway)."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import sys
from collections.abc import Iterator

import pytest

from cryomonai.experiment.grid import GridRunner, grid_cells, load_preset
from cryomonai.experiment.preset import GridCell
from cryomonai.experiment.progress import GridProgress, count_runs
from cryomonai.logs import LOG_FORMAT

STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"


class Lines(logging.Handler):
    """The ``cryomonai`` logger's lines, formatted as the command line writes them."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter(LOG_FORMAT))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@contextlib.contextmanager
def captured_lines() -> Iterator[list[str]]:
    """The ``cryomonai`` logger's INFO lines while in the block."""
    logger = logging.getLogger("cryomonai")
    handler, level = Lines(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler.lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.fixture
def lines():
    with captured_lines() as got:
        yield got


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_the_eta_weighs_each_kind_of_run_by_its_mean_duration_so_far(lines):
    """1 pretraining, 2 fine-tunings (1 selection + 1 cell), 1 evaluation. After the pretraining (100 s)
    every kind is guessed at 100 s: 300 s of work left at the pace so far (100 s of wall time per 100 s of
    work) → 300 s. After a 10 s fine-tuning at t = 110: pretrain 100, fine-tune 10, evaluation (not seen
    yet) the cheapest kind seen, 10 → 20 s left at pace 110/110."""
    clock = FakeClock()
    bar = GridProgress("g", {"pretrain": 1, "selection": 1, "finetune": 1, "evaluate": 1}, io.StringIO(), clock)
    assert bar.total == 4 and bar.eta() is None
    clock.t += 100
    bar.done("pretrain", "pretrain moco on d, seed 0", seconds=100.0)
    assert bar.eta() == pytest.approx(300.0)
    clock.t += 10
    bar.done("finetune", "fine-tune moco on d", seconds=10.0)
    assert bar.eta() == pytest.approx(20.0)
    clock.t += 20  # a pool ran two 40-second fine-tunings in 20 s: twice the pace
    bar.done("finetune", "fine-tune random on d", seconds=30.0)
    clock.t += 5
    bar.done("evaluate", "evaluate d", started=clock.t - 8)  # no seconds: since the later of its start and the last run
    assert bar.seconds["evaluate"] == [5.0] and bar.eta() == 0.0
    bar.close()
    assert len(lines) == 4 and all(re.match(rf"{STAMP} INFO cryomonai.experiment.progress: \[grid g\] ", l) for l in lines)
    assert [l.split("] ")[1].split(",")[0] for l in lines] == ["1/4 runs", "2/4 runs", "3/4 runs", "4/4 runs"]
    assert re.search(r"ETA \d\d:\d\d \(0:05:00 left\): pretrain moco on d, seed 0$", lines[0]), lines[0]
    assert lines[-1].endswith("(0:00:00 left): evaluate d")


def test_a_resumed_grid_starts_from_the_pace_it_had(lines, tmp_path):
    """The first invocation: a 100 s pretraining and a 10 s fine-tuning in 110 s of wall time, then it is
    stopped. Time the grid does not run does not count. The second one has an ETA before its first run
    ends: 2 fine-tunings at 10 s and an evaluation at the cheapest kind's mean (10 s) at the old pace → 30 s;
    after a 10 s fine-tuning at t + 10: 1 × 10 + 1 × 10 at pace 120/120 → 20 s."""
    state, clock = tmp_path / "progress.json", FakeClock()
    with GridProgress("g", {"pretrain": 1, "finetune": 3, "evaluate": 1}, io.StringIO(), clock, state=state) as bar:
        clock.t += 100
        bar.done("pretrain", "pretrain moco on d, seed 0", seconds=100.0)
        clock.t += 10
        bar.done("finetune", "fine-tune moco on d", seconds=10.0)
    assert json.loads(state.read_text()) == {"elapsed": 110.0, "kinds": {
        "pretrain": {"seconds": 100.0, "runs": 1}, "finetune": {"seconds": 10.0, "runs": 1},
        "evaluate": {"seconds": 0.0, "runs": 0}}}
    clock.t += 3600  # stopped for an hour
    lines.clear()
    with GridProgress("g", {"finetune": 2, "evaluate": 1}, io.StringIO(), clock, state=state) as again:
        assert again.eta() == pytest.approx(30.0)
        assert len(lines) == 1 and re.search(r"\[grid g\] resumed: 3 runs to do, ETA \d\d:\d\d \(0:00:30 left\)$", lines[0])
        clock.t += 10
        again.done("finetune", "fine-tune random on d", seconds=10.0)
        assert again.eta() == pytest.approx(20.0)
    assert json.loads(state.read_text())["elapsed"] == 120.0
    # without the state, as before: no ETA until a run finishes
    assert GridProgress("g", {"finetune": 2}, io.StringIO(), clock).eta() is None


def test_an_unreadable_pace_is_one_warning_and_a_fresh_eta(tmp_path, caplog):
    state = tmp_path / "progress.json"
    state.write_text('{"elapsed": 5, "kinds": {"pretrain": {"seconds": "x"}}}')
    with caplog.at_level(logging.WARNING, logger="cryomonai"):
        bar = GridProgress("g", {"finetune": 2}, io.StringIO(), FakeClock(), state=state)
    assert bar.eta() is None and bar.before_elapsed == 0.0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(state) in warnings[0] and "ETA starts afresh" in warnings[0]


def test_on_a_terminal_it_is_one_bar_and_no_lines(lines):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    clock, screen = FakeClock(), Terminal()
    with GridProgress("g", {"pretrain": 1, "finetune": 2}, screen, clock) as bar:
        for kind in ("pretrain", "finetune", "finetune"):
            clock.t += 60
            bar.done(kind, kind, seconds=60.0)
    text = screen.getvalue()
    assert "grid g: 3/3 runs" in text and "ETA " in text and "(0:00:00 left)" in text and lines == []


def test_runs_left_are_counted_as_the_slurm_jobs_plus_one_evaluation_per_cell(tmp_path):
    """On a new folder the paper preset is docs/records/slurm/count_jobs.txt's 600 jobs (60 pretrainings,
    300 selection runs, 240 cell fine-tunings), plus an evaluation per cell."""
    runner = GridRunner(load_preset("paper"), tmp_path)
    cells = list(grid_cells(runner.preset))
    counts = count_runs(runner, cells)
    assert counts == {"pretrain": 60, "selection": 300, "finetune": 240, "evaluate": len(cells)}
    # half the pretrainings done and one arm's selection runs tried: only what is left is counted
    done = [c for c in cells if c.method != "random" and c.repeat < 2]
    for c in {(c.dataset, c.method, c.repeat) for c in done}:
        model = runner.layout.pretrain_dir(c[0], c[1], runner.preset.seed + c[2]) / "models" / "pretrain.pt"
        model.parent.mkdir(parents=True)
        model.touch()
    assert count_runs(runner, cells)["pretrain"] == 60 - len({(c.dataset, c.method, c.repeat) for c in done})
    # a resumed grid: an arm's selection runs trained but its recipe not yet chosen (nothing in selection.csv)
    dataset, method = cells[0].dataset, "simclr"
    trained = [(r, f) for r, f in runner.selection_runs(dataset, method)][:4]
    for recipe, frac in trained:
        final = runner.layout.cell_run(GridCell(dataset, method, frac, 0).run_dir(recipe)).finetune_final
        final.parent.mkdir(parents=True, exist_ok=True)
        final.touch()
    assert count_runs(runner, cells)["selection"] == 300 - len(trained)


def test_cli_grid_log_file_gets_the_timestamped_lines(tmp_path, monkeypatch, capsys):
    """``cryomonai grid --log_file PATH``: the lines on stderr and in the file; the logger as it was after."""
    from cryomonai import cli
    from cryomonai.experiment import grid as grid_module

    def fake_run_grid(preset, out, **kw):
        logging.getLogger("cryomonai.experiment.grid").info("[grid %s] cell %d/%d: %s", preset.name, 1, 1, "a cell")
        print("not a log line", file=sys.stderr)

    monkeypatch.setattr(grid_module, "run_grid", fake_run_grid)
    log = tmp_path / "logs" / "grid.log"
    monkeypatch.setattr(sys, "argv", ["cryomonai", "grid", "--preset", "cpu", "--out", str(tmp_path / "g"),
                                      "--log_file", str(log), "--repeats", "1"])
    cli.main()
    line = rf"{STAMP} INFO cryomonai.experiment.grid: \[grid cpu\] cell 1/1: a cell"
    assert re.fullmatch(line + "\n", log.read_text()), log.read_text()
    assert re.search(line, capsys.readouterr().err)
    logger = logging.getLogger("cryomonai")
    assert logger.propagate and not [h for h in logger.handlers if isinstance(h, logging.FileHandler)]
    cli.main()  # a rerun (a resumed grid) appends
    assert len(log.read_text().splitlines()) == 2
