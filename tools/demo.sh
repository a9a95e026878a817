#!/usr/bin/env bash
# Set up .venv (if needed) and run the main job on built-in simulated data: the paper's experiment
# grid at the `cpu` preset (about 30 min on 2 CPU cores; after the first of 3 repeats, about half-way,
# an interim report in runs/grid_cpu/interim/), report in runs/grid_cpu/.
# Extra arguments go to `cryomonai grid` (e.g. --preset paper on a GPU, --repeats 2, --out DIR).
# Rerunning resumes: finished cells are not rerun.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/tools/setup_env.sh" run
cd "$root"
.venv/bin/cryomonai grid --preset cpu --out runs/grid_cpu "$@"
echo "report: $root/runs/grid_cpu/table.md (+ accuracy_vs_labels.png, confusion_*.png, gradcam.png, embedding_before_after.png)"
