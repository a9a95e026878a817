#!/usr/bin/env bash
# the main job from a fresh clone with oneDNN and ATen capped at AVX2 (no AVX-512, no bf16): how a CPU without AVX-512/bf16 runs it
cd "$(git rev-parse --show-toplevel)"  # a fresh clone
export ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2
{ date -u; lscpu | grep "Model name"; echo "commit $(git rev-parse --short HEAD)"; env | grep -E "ONEDNN|ATEN_CPU"; } > env.txt
start=$(date +%s)
bash tools/demo.sh > run.log 2>&1
rc=$?
.venv/bin/python -c "import torch, cryomonai.engines.perf as p; print('torch', torch.__version__, 'cpu capability', torch.backends.cpu.get_cpu_capability(), 'native_bf16', p.native_bf16('cpu'))" >> env.txt 2>&1
echo "rc $rc wall $(( $(date +%s) - start )) s (venv included)" >> env.txt
date -u >> env.txt
