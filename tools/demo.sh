#!/usr/bin/env bash
# Set up .venv (if needed) and run the main job on built-in simulated data. Extra arguments go to
# `cryomonai demo` (e.g. --n_per_class 500 for the paper's size).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/tools/setup_env.sh"
cd "$root"
exec .venv/bin/cryomonai demo "$@"
