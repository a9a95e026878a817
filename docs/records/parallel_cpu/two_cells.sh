#!/bin/bash
# serial: one process, 2 threads, two cells; parallel: two processes, 1 thread each, one cell each
cd /work/main; PY=.venv/bin/python
for frac_ep in "0.25 60" "1.0 15"; do set -- $frac_ep
 for round in 1 2; do
  s=$(date +%s.%N); OMP_NUM_THREADS=2 $PY /tmp/par/cell.py 2 $1 $2 1,2 ser 2>/dev/null | tail -1; e=$(date +%s.%N)
  echo "frac=$1 epochs=$2 serial wall $(echo "$e - $s" | bc)"
  s=$(date +%s.%N)
  OMP_NUM_THREADS=1 $PY /tmp/par/cell.py 1 $1 $2 1 p1 2>/dev/null | tail -1 &
  OMP_NUM_THREADS=1 $PY /tmp/par/cell.py 1 $1 $2 2 p2 2>/dev/null | tail -1 &
  wait; e=$(date +%s.%N)
  echo "frac=$1 epochs=$2 parallel wall $(echo "$e - $s" | bc)"
 done
done
