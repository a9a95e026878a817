#!/usr/bin/env bash
# Fresh-clone runs of the README's first command at HEAD: (1) as is (bf16 on this CPU), (2) capped at AVX2.
set -u
base=/work/runs/freshclone_v3
commit=$(git -C /work/main rev-parse HEAD)
for kind in bf16 avx2; do
  d=$base/$kind; rm -rf "$d"; mkdir -p "$d"
  git clone -q /work/main "$d/x"; cd "$d/x"
  if [ "$kind" = avx2 ]; then export ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2; else unset ONEDNN_MAX_CPU_ISA ATEN_CPU_CAPABILITY; fi
  { date -u; lscpu | grep -E "Model name|Flags" | sed 's/Flags:.*/flags: '"$(lscpu | grep -o 'avx512f\|avx512_bf16\|amx_tile' | sort -u | tr '\n' ' ')"'/'; echo "commit $(git rev-parse --short HEAD)"; env | grep -E "ONEDNN|ATEN_CPU"; } > ../env.txt
  start=$(date +%s)
  bash tools/demo.sh > ../run.log 2>&1
  rc=$?
  .venv/bin/python -c "import torch, cryomonai.engines.perf as p; print('torch', torch.__version__, 'cpu capability', torch.backends.cpu.get_cpu_capability(), 'native_bf16', p.native_bf16('cpu'))" >> ../env.txt 2>&1
  echo "rc $rc wall $(( $(date +%s) - start )) s (venv included)" >> ../env.txt
  date -u >> ../env.txt
done
echo finished > $base/DONE
