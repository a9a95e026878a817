"""The warning when a CPU run's threads would share busy cores (``cryomonai.engines.busy_cores``)."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser

import cryomonai.engines.busy_cores as busy
from cryomonai.engines import warn_busy_cores

CONFIGS = Path(__file__).resolve().parents[1] / "bundles" / "cryo_ssl" / "configs"


@pytest.mark.parametrize(("threads", "cores", "others", "fix"), [
    (2, 2, 0, None),  # an idle machine: the threads fit
    (2, 4, 2, None),
    (1, 2, 5, None),  # one thread waits on nobody
    (2, 2, 1, "OMP_NUM_THREADS=1"),
    (2, 2, 2, "OMP_NUM_THREADS=1"),
    (8, 8, 6, "OMP_NUM_THREADS=2"),
])
def test_the_message_names_the_threads_that_fit(threads, cores, others, fix) -> None:
    message = busy.busy_cores_message(threads, cores, others)
    if fix is None:
        assert message is None
    else:
        assert f"{others} other thread(s)" in message and f"{cores} cores" in message and fix in message


def test_runnable_threads_are_the_median_reading_less_the_reader() -> None:
    readings = iter(["0.50 0.40 0.30 3/120 999", "0.50 0.40 0.30 9/120 999", "0.50 0.40 0.30 4/121 999"])
    assert busy.runnable_elsewhere(samples=3, interval=0, read=lambda: next(readings)) == 3  # median 4, less 1


@pytest.mark.skipif(not Path(busy.LOADAVG).exists(), reason="/proc/loadavg is Linux's")
def test_busy_processes_on_this_machine_are_counted() -> None:
    before = busy.runnable_elsewhere()
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        time.sleep(0.5)  # started and spinning
        during = busy.runnable_elsewhere(samples=7)
    finally:
        for p in spinners:
            p.kill()
            p.wait()
    assert before >= 0 and during >= 2


@pytest.fixture
def two_threads():
    saved = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(saved)


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name == busy.__name__]


def test_it_warns_once_on_busy_cores_and_not_on_free_ones_a_gpu_or_one_thread(two_threads, monkeypatch, caplog) -> None:
    monkeypatch.setattr(busy, "_cores", lambda: 2)
    others = {"n": 2}
    monkeypatch.setattr(busy, "runnable_elsewhere", lambda: others["n"])
    with caplog.at_level(logging.WARNING, logger="cryomonai"):
        assert warn_busy_cores("cpu") is True
        others["n"] = 0
        assert warn_busy_cores("cpu") is False
        others["n"] = 5
        assert warn_busy_cores(torch.device("cuda")) is False  # a GPU run's threads only feed the GPU
        torch.set_num_threads(1)
        assert warn_busy_cores("cpu") is False
    assert len(_warnings(caplog)) == 1 and "OMP_NUM_THREADS=1" in _warnings(caplog)[0]


def test_the_bundle_checks_when_it_initialises(two_threads, monkeypatch, caplog) -> None:
    monkeypatch.setattr(busy, "_cores", lambda: 2)
    monkeypatch.setattr(busy, "runnable_elsewhere", lambda: 2)
    parser = ConfigParser()
    parser.read_config([str(CONFIGS / "common.json")])
    parser["device"] = "$torch.device('cpu')"
    with caplog.at_level(logging.WARNING, logger="cryomonai"):
        parser.get_parsed_content("initialize", lazy=False)
    assert len(_warnings(caplog)) == 1
