"""cryomonai as a user installs it: the wheel (built from the sdist) in a fresh venv outside the checkout.

``.ci/run`` sets ``CRYOMONAI_WHEEL_TESTS=1``: then this test *runs* (and fails if the wheel does not
build, install or work). Without the variable (a developer's machine) it is skipped: it builds a venv
(torch first, from the same find-links as ``tools/setup_env.sh``, which it calls) and takes a few minutes.

From a folder outside the repository, with ``CRYOMONAI_BUNDLES`` unset, so that only the wheel's own
package data (``cryomonai/_bundles/cryo_ssl``: configs, grid presets, shipped weights) can be found:
``cryomonai --help``; one cell of a tiny grid preset (``results.csv``); the shipped classifier on a few
simulated subtomograms (``predictions.star``). And, always: the order in which a bundle is looked for.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import starfile

REPO = Path(__file__).resolve().parents[1]
REQUIRED = os.environ.get("CRYOMONAI_WHEEL_TESTS") == "1"
#: the tests that build and install the wheel: ~1 min on 2 idle cores, ~3 min on 2 shared ones
WHEEL = [pytest.mark.skipif(not REQUIRED, reason="builds a venv from the wheel (minutes); CI sets CRYOMONAI_WHEEL_TESTS=1"),
         pytest.mark.slow, pytest.mark.timeout(900)]


def _wheel(test):
    """The marks of a test that builds and installs the wheel."""
    for mark in WHEEL:
        test = mark(test)
    return test

#: one cell: 3 classes × 6 subtomograms of 8³ (binned 2×), random init, all labels, one epoch
TINY_PRESET = {
    "name": "wheel_tiny",
    "datasets": [{"name": "snr_1", "snr": 1.0, "n_per_class": 6, "box": 8, "binning": 2, "classes": ["1bxn", "1qvr", "3cf3"],
                  "max_shift": 1.0, "n_neighbours": 1, "workers": 0}],
    "methods": ["random"], "label_fractions": [1.0], "repeats": 1, "seed": 0, "workers": 1,
    "common": {"batch_size": 4, "num_workers": 0}, "finetune": {"epochs": 1}, "recipes": {}, "readouts": False,
    "report": {"gradcam_examples": 2, "embedding": "pca"},
}


def _run(venv: Path, cwd: Path, *argv: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``argv`` with the venv's ``bin`` first on PATH, in ``cwd``, without anything pointing at the checkout."""
    env = {k: v for k, v in os.environ.items() if k not in ("CRYOMONAI_BUNDLES", "PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The sdist and the wheel built from it (``uv build``), installed into a fresh venv by
    ``tools/setup_env.sh WHEEL VENV``; the seconds each step took."""
    root = tmp_path_factory.mktemp("wheel")
    assert REPO not in root.resolve().parents, f"{root} is inside the repository"
    seconds, t0 = {}, time.perf_counter()
    uv = Path(sys.executable).parent / "uv"  # tools/setup_env.sh put it in the checkout's venv
    _run(Path(sys.executable).parent.parent, REPO, str(uv), "build", "--quiet", "--out-dir", str(root / "dist"))
    seconds["build"] = time.perf_counter() - t0
    (wheel,) = (root / "dist").glob("cryomonai-*.whl")
    (sdist,) = (root / "dist").glob("cryomonai-*.tar.gz")
    t0 = time.perf_counter()
    subprocess.run(["bash", str(REPO / "tools" / "setup_env.sh"), str(wheel), str(root / "venv")], check=True,
                   timeout=600)
    seconds["install"] = time.perf_counter() - t0
    work = root / "work"
    work.mkdir()
    return {"venv": root / "venv", "work": work, "wheel": wheel, "sdist": sdist, "seconds": seconds}


@_wheel
def test_the_wheel_carries_the_bundle(installed: dict) -> None:
    names = set(zipfile.ZipFile(installed["wheel"]).namelist())
    bundle = "cryomonai/_bundles/cryo_ssl/"
    for name in ("configs/common.json", "configs/metadata.json", "configs/logging.conf", "configs/methods/simclr.json",
                 "configs/encoders/rb3d_bn.json", "configs/grid/cpu.json", "docs/model_card.md",
                 "models/shipped/weights.json", "models/shipped/simclr_rb3d_bn_16_classifier.pt"):
        assert bundle + name in names, name
    assert "cryomonai/simulate/data/templates_10A.npz" in names
    assert not any(n.startswith(("tests/", "benchmarks/", "tools/")) for n in names)


@_wheel
def test_the_installed_package_runs_outside_the_checkout(installed: dict) -> None:
    venv, work, t0 = installed["venv"], installed["work"], time.perf_counter()
    # the package and its bundle come from the venv, not from this checkout
    where = _run(venv, work, str(venv / "bin" / "python"), "-c",
                 "import cryomonai, cryomonai.pipeline as p; print(cryomonai.__file__); print(p.bundle_dir())").stdout.split()
    site = str(venv / "lib")
    assert where[0].startswith(site) and where[1].startswith(site) and where[1].endswith("cryomonai/_bundles/cryo_ssl"), where

    usage = _run(venv, work, "cryomonai", "--help").stderr
    assert all(name in usage for name in ("grid", "simulate", "pretrain", "finetune", "infer", "embed")), usage

    # one cell of a tiny grid preset
    (work / "tiny.json").write_text(json.dumps(TINY_PRESET))
    _run(venv, work, "cryomonai", "grid", "--preset", "tiny.json", "--out", "grid", "--max_cells", "1")
    results = pd.read_csv(work / "grid" / "results.csv")
    assert len(results) == 1 and results.loc[0, "method"] == "random" and results.loc[0, "label_fraction"] == 1.0
    assert 0.0 <= results.loc[0, "test_accuracy"] <= 1.0
    assert (work / "grid" / "table.md").is_file()

    # the shipped classifier (by name, from the package data) on simulated subtomograms of its kind: 16³ at 20 Å
    _run(venv, work, "cryomonai", "simulate", "--out", "data", "--snr", "inf", "--n_per_class", "2", "--box", "16",
         "--binning", "2", "--workers", "0", "--classes", "1bxn,1qvr,3cf3,1s3x")
    table = work / "data" / "snr_inf" / "particles.star"
    _run(venv, work, "cryomonai", "infer", str(table), "simclr_rb3d_bn_16_classifier", "--encoder", "rb3d_bn",
         "--box", "16", "--out", "pred", "--progress", "false", "--device", "cpu")  # a device name (the CLI makes it a torch.device)
    p = starfile.read(work / "pred" / "predictions.star", always_dict=True)["particles"]
    assert len(p) == 8 and p["cryoPredictedClassNumber"].between(1, 10).all()
    assert set(p["cryoInputClassName"]) == {"1bxn", "1qvr", "3cf3", "1s3x"}
    assert p["rlnMaxValueProbDistribution"].between(0.0, 1.0).all()
    seconds = {**installed["seconds"], "run": time.perf_counter() - t0}
    print("wheel test seconds:", {k: round(v) for k, v in seconds.items()})


def test_bundle_lookup_order(tmp_path, monkeypatch):
    """``$CRYOMONAI_BUNDLES`` (alone, when set), then the checkout's ``bundles/``, then the package's copy."""
    import shutil

    from cryomonai import pipeline
    from cryomonai.errors import ConfigError

    monkeypatch.delenv("CRYOMONAI_BUNDLES", raising=False)
    assert pipeline.bundle_dir() == REPO / "bundles" / "cryo_ssl"  # this checkout
    for name in ("env", "package"):
        shutil.copytree(REPO / "bundles" / "cryo_ssl" / "configs", tmp_path / name / "cryo_ssl" / "configs")
    # no checkout: the package's copy (cryomonai/_bundles in an installed wheel)
    monkeypatch.setattr(pipeline, "CHECKOUT_BUNDLES", tmp_path / "nowhere")
    monkeypatch.setattr(pipeline, "PACKAGED_BUNDLES", str(tmp_path / "package"))  # joinpath of an absolute path
    assert pipeline.bundle_dir() == tmp_path / "package" / "cryo_ssl"
    monkeypatch.setenv("CRYOMONAI_BUNDLES", str(tmp_path / "env"))
    assert pipeline.bundle_dir() == tmp_path / "env" / "cryo_ssl"
    assert pipeline.bundle_configs("finetune")[0] == str(tmp_path / "env" / "cryo_ssl" / "configs" / "common.json")
    monkeypatch.setenv("CRYOMONAI_BUNDLES", str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match="bundle 'cryo_ssl': not found in \\$CRYOMONAI_BUNDLES"):
        pipeline.bundle_dir()
    monkeypatch.delenv("CRYOMONAI_BUNDLES")
    monkeypatch.setattr(pipeline, "PACKAGED_BUNDLES", str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match="not found in the checkout .*, the installed package"):
        pipeline.bundle_dir()
