#!/usr/bin/env bash
# Set up .venv (if needed), check the import layers, then run the test suite. Extra arguments go to pytest.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/tools/setup_env.sh"
cd "$root"
# setup.cfg's [importlinter] layers contract: a lower package never imports a higher one (fails the run);
# stdin closed, or building the import graph stops a run that is in the background of a terminal
.venv/bin/lint-imports --no-logo </dev/null
exec .venv/bin/python -m pytest -q "$@"
