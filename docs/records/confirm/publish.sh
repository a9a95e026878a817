#!/usr/bin/env bash
# Publish the finished `confirm` grid under docs/grid_confirm/: its report rewritten by this checkout's
# code (the run itself trained with commit 46fa921's), the tables, the figures, and issue 26's targets
# read by targets.py. Nothing is trained here: a grid whose results.csv lacks a cell stops with an error.
#
#   bash docs/records/confirm/publish.sh /root/runs/confirm_v3
set -euo pipefail
grid=${1:?give the confirm grid folder}
root=$(git rev-parse --show-toplevel)
cd "$root"
out=docs/grid_confirm
py=.venv/bin/python

# every cell evaluated: refuse to start training from here
$py - "$grid" <<'EOF'
import sys
from cryomonai.experiment.grid import GridRunner
from cryomonai.experiment.preset import grid_cells, load_preset
from cryomonai.experiment.tables import cell_key
runner = GridRunner(load_preset("confirm"), sys.argv[1])
missing = [c for c in grid_cells(runner.preset) if cell_key(c) not in runner.tables.done()]
if missing:
    sys.exit(f"{sys.argv[1]}: {len(missing)} cells not evaluated yet (first: {missing[0]}); let the grid finish")
EOF
.venv/bin/cryomonai grid --preset confirm --out "$grid"  # all cells done: only the report is written

mkdir -p "$out"
cp "$grid"/{table.md,results.csv,selection.csv,summary.json,timing.md,timings.csv,preset.json} "$out"/
cp "$grid"/*_test_accuracy.csv "$out"/
[ -f "$grid/recipes_extended.json" ] && cp "$grid/recipes_extended.json" "$out"/
cp "$grid"/*.png "$out"/
$py docs/records/confirm/targets.py "$out/results.csv" --classes 10 > "$out/targets.md"
{ date -u; lscpu | grep "Model name"; echo "report written by commit $(git rev-parse --short HEAD)"; } > "$out/published.txt"
du -sh "$out"
