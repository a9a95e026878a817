#!/usr/bin/env bash
# The README's first command from a fresh clone of HEAD, timed, nothing else running.
set -u
export ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2
base=/work/runs/freshclone_v4_avx2
d=$base/avx2; rm -rf "$d"; mkdir -p "$d"
git clone -q /work/main "$d/x"; cd "$d/x"
{ date -u; lscpu | grep "Model name"; echo "flags: $(lscpu | grep -o 'avx512f\|avx512_bf16\|amx_tile' | sort -u | tr '\n' ' ')"; echo "commit $(git rev-parse --short HEAD)"; env | grep -E "ONEDNN|ATEN_CPU"; } > ../env.txt
start=$(date +%s)
bash tools/demo.sh > ../run.log 2>&1
rc=$?
.venv/bin/python -c "import torch, cryomonai.engines.perf as p; print('torch', torch.__version__, 'cpu capability', torch.backends.cpu.get_cpu_capability(), 'native_bf16', p.native_bf16('cpu'))" >> ../env.txt 2>&1
echo "rc $rc wall $(( $(date +%s) - start )) s (venv included)" >> ../env.txt
date -u >> ../env.txt
echo finished > $base/DONE
