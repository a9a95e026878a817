"""tools/setup_env.sh: torch==2.13.0 first, then the package; uv with pip's find-links, pip as the fallback;
``run`` installs the package alone, ``dev`` its extras too, and a dev venv serves a later ``run``.

The venv's python and uv are stand-ins that log their arguments, so nothing is installed."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _exe(path: Path, body: str) -> None:
    path.write_text("#!/usr/bin/env bash\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


@pytest.fixture()
def repo(tmp_path):
    """A copy of the script and setup files, with a stand-in venv whose python/uv log each call."""
    (tmp_path / "tools").mkdir()
    shutil.copy(ROOT / "tools" / "setup_env.sh", tmp_path / "tools")
    for name in ("setup.cfg", "setup.py"):
        shutil.copy(ROOT / name, tmp_path)
    bin_ = tmp_path / ".venv" / "bin"
    bin_.mkdir(parents=True)
    log = tmp_path / "calls.log"
    # python: logs; `pip install ... uv` creates the uv stand-in unless NO_UV is set; `pip config get` prints nothing
    _exe(bin_ / "python", f"""echo "python $*" >> {log}
if [ "$*" = "-m pip install -q --disable-pip-version-check uv" ]; then
  [ -n "${{NO_UV:-}}" ] && exit 1
  printf '#!/usr/bin/env bash\\necho "uv $*" >> {log}\\n' > {bin_}/uv; chmod +x {bin_}/uv
fi
""")
    return tmp_path


def _run(repo: Path, *args: str, **env: str) -> tuple[int, list[str]]:
    log = repo / "calls.log"
    log.unlink(missing_ok=True)
    proc = subprocess.run(["bash", str(repo / "tools" / "setup_env.sh"), *args], capture_output=True, text=True,
                          env={**os.environ, "PIP_FIND_LINKS": "/opt/wheels", **env})
    return proc.returncode, log.read_text().splitlines() if log.exists() else []


def test_uv_installs_torch_first_then_the_package(repo):
    rc, calls = _run(repo, "run")
    assert rc == 0
    installs = [c for c in calls if c.startswith("uv pip install")]
    assert installs == ["uv pip install -q --python .venv/bin/python --prerelease disallow --find-links /opt/wheels torch==2.13.0",
                        "uv pip install -q --python .venv/bin/python --prerelease disallow --find-links /opt/wheels -e ."]
    assert (repo / ".venv" / ".cryomonai-installed").read_text().split()[1] == "run"
    # dev after run: the extras are installed; run after dev: nothing to do
    rc, calls = _run(repo, "dev")
    assert rc == 0 and calls[-1].endswith("-e .[dev]")
    rc, calls = _run(repo, "run")
    assert rc == 0 and calls == []
    rc, calls = _run(repo)  # dev is the default
    assert rc == 0 and calls == []


def test_pip_is_the_fallback_without_uv(repo):
    rc, calls = _run(repo, "dev", NO_UV="1")
    assert rc == 0
    installs = [c for c in calls if c.startswith("python -m pip install") and not c.endswith(" uv")]
    assert installs[-2:] == ["python -m pip install -q --disable-pip-version-check torch==2.13.0",
                             "python -m pip install -q --disable-pip-version-check -e .[dev]"]


def test_unknown_kind_is_refused(repo):
    proc = subprocess.run(["bash", str(repo / "tools" / "setup_env.sh"), "bogus"], capture_output=True, text=True)
    assert proc.returncode == 2 and "use dev or run" in proc.stderr


def test_a_wheel_goes_into_the_named_venv_torch_first(repo, tmp_path_factory):
    """``setup_env.sh WHEEL VENV`` (tests/test_wheel.py): the same installer and find-links, the wheel
    itself (not editable), into VENV; no stamp, so a rerun installs again."""
    venv = tmp_path_factory.mktemp("elsewhere") / "venv"
    shutil.copytree(repo / ".venv", venv)
    wheel = repo / "cryomonai-0.1.0-py3-none-any.whl"
    wheel.touch()
    (venv / "bin" / "python").write_text((venv / "bin" / "python").read_text().replace(
        f"{repo}/.venv/bin", f"{venv}/bin"))
    rc, calls = _run(repo, str(wheel), str(venv))
    assert rc == 0
    installs = [c for c in calls if c.startswith("uv pip install")]
    py = f"{venv}/bin/python"
    assert installs == [f"uv pip install -q --python {py} --prerelease disallow --find-links /opt/wheels torch==2.13.0",
                        f"uv pip install -q --python {py} --prerelease disallow --find-links /opt/wheels {wheel}"]
    assert not (venv / ".cryomonai-installed").exists() and not (repo / ".venv" / ".cryomonai-installed").exists()
