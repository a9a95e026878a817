#!/usr/bin/env bash
# wait for the label_efficiency rerun, then the cpu preset with oneDNN and ATen capped at AVX2, at 69bfc34 (the commit of docs/grid_cpu_serial)
while kill -0 14748 2>/dev/null; do sleep 10; done
cd /work/avx2_tree
export ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 PYTHONPATH=/work/avx2_tree
out=/work/main/runs/grid_cpu_avx2
mkdir -p $out
{ date -u; lscpu | grep "Model name"; echo "commit $(git rev-parse HEAD)"; env | grep -E "ONEDNN|ATEN_CPU"; /work/main/.venv/bin/python -c "import torch, cryomonai.engines.perf as p; print('torch', torch.__version__, 'cpu capability', torch.backends.cpu.get_cpu_capability(), 'native_bf16', p.native_bf16('cpu'))"; } > /work/avx2_env.txt 2>&1
start=$(date +%s)
/work/main/.venv/bin/python -m cryomonai.cli grid --preset cpu --out $out > /work/avx2_run.log 2>&1
echo "rc $? wall $(( $(date +%s) - start )) s" >> /work/avx2_env.txt
date -u >> /work/avx2_env.txt
