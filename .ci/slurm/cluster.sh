#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for tests/test_slurm.py (as root, Debian's slurm-wlm + munge).
# Usage: cluster.sh up | down | status. `up` installs the packages if missing, writes /etc/slurm/slurm.conf,
# starts munged, slurmctld and slurmd, and waits (60 s at most) until the node is idle; if it is not,
# it prints the daemons' logs and exits 1. `down` stops them.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=${CRYOMONAI_SLURM_DIR:-/var/tmp/cryomonai-slurm}
host=$(hostname -s)
cpus=$(nproc)

logs() {
  for f in "$dir"/slurmctld.log "$dir"/slurmd.log /var/log/munge/munged.log; do
    [ -f "$f" ] && { echo "---- $f (last 40 lines)"; tail -n 40 "$f"; }
  done
  return 0
}

up() {
  if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q slurm-wlm munge >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q slurm-wlm munge >/dev/null; }
  fi
  mkdir -p "$dir"/state "$dir"/spool /etc/slurm /run/munge /var/log/munge
  sed -e "s|@HOST@|$host|g" -e "s|@CPUS@|$cpus|g" -e "s|@DIR@|$dir|g" "$here/slurm.conf.in" > /etc/slurm/slurm.conf
  [ -s /etc/munge/munge.key ] || { dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; }
  chown munge:munge /etc/munge/munge.key /run/munge /var/log/munge && chmod 400 /etc/munge/munge.key
  pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged
  pgrep -x slurmctld >/dev/null || /usr/sbin/slurmctld -c   # -c: a clean state (no jobs from an earlier run)
  pgrep -x slurmd >/dev/null || /usr/sbin/slurmd
  for _ in $(seq 60); do
    state=$(sinfo -h -N -o %T 2>/dev/null | head -n 1 || true)
    case "$state" in idle|mixed|allocated) echo "slurm up: node $host ($cpus CPUs) $state"; return 0 ;; esac
    sleep 1
  done
  echo "slurm did not come up within 60 s (node state: '${state:-none}')" >&2
  logs >&2
  exit 1
}

down() {
  scancel --full --quiet --user="$(id -un)" 2>/dev/null || true
  for d in slurmd slurmctld munged; do pkill -x "$d" 2>/dev/null || true; done
  for _ in $(seq 20); do pgrep -x slurmd >/dev/null || pgrep -x slurmctld >/dev/null || break; sleep 0.5; done
  echo "slurm down"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) sinfo; squeue ;;
  logs) logs ;;
  *) echo "usage: $0 up|down|status|logs" >&2; exit 2 ;;
esac
