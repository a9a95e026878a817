#!/usr/bin/env bash
# Set up .venv (if needed) and run the main job on built-in simulated data: the paper's experiment
# grid at the `cpu` preset (10/25 % labels; about 15 min on 2 CPU cores; after each of
# the first 2 repeats an interim report in runs/grid_cpu/interim/), report in runs/grid_cpu/.
# The fuller protocol with 100 % labels (about 30 min before issue 26's recipes; not retimed): .venv/bin/cryomonai grid --preset cpu_full (→ runs/grid_cpu_full)
# Extra arguments go to `cryomonai grid` (e.g. --repeats 2).
# Rerunning resumes: finished cells are not rerun.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/tools/setup_env.sh" run
cd "$root"
.venv/bin/cryomonai grid --preset cpu --out runs/grid_cpu "$@"
echo "report: $root/runs/grid_cpu/table.md (+ accuracy_vs_labels.png, gain_over_baseline.png, confusion_*.png, gradcam.png, embedding_before_after.png, report.html)"
