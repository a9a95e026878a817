#!/usr/bin/env bash
# Create (or reuse) .venv in the repository root and install cryomonai into it.
# torch==2.13.0 (the CPU wheel) goes in first, so nothing pulls a CUDA build; then the package + [dev].
# Re-running is cheap: the install is skipped while setup.cfg is unchanged.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
[ -x .venv/bin/python ] || python3 -m venv .venv
stamp=.venv/.cryomonai-installed
want=$(sha1sum setup.cfg setup.py | sha1sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install -q --disable-pip-version-check torch==2.13.0
  .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[dev]"
  echo "$want" > "$stamp"
fi
