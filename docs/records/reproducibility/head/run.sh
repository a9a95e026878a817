#!/usr/bin/env bash
# after the AVX2 grid: the cpu preset natively at the current HEAD, repeat 0 only (6 cells + selection), to compare with docs/grid_cpu_serial (69bfc34)
while pgrep -f queue_avx2.sh >/dev/null; do sleep 10; done
cd /work/grid_tree
export PYTHONPATH=/work/grid_tree
out=/work/main/runs/grid_cpu_head
mkdir -p $out
{ date -u; lscpu | grep "Model name"; echo "commit $(git rev-parse HEAD)"; /work/main/.venv/bin/python -c "import torch, cryomonai.engines.perf as p; print('torch', torch.__version__, 'cpu capability', torch.backends.cpu.get_cpu_capability(), 'native_bf16', p.native_bf16('cpu'))"; } > /work/native_env.txt 2>&1
start=$(date +%s)
/work/main/.venv/bin/python -m cryomonai.cli grid --preset cpu --out $out --max_cells 6 > /work/native_run.log 2>&1
echo "rc $? wall $(( $(date +%s) - start )) s" >> /work/native_env.txt
date -u >> /work/native_env.txt
