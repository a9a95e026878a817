#!/usr/bin/env bash
# Create (or reuse) .venv in the repository root and install cryomonai into it.
# torch==2.13.0 (the CPU wheel) goes in first, so nothing pulls a CUDA build; then the package.
# Usage: setup_env.sh [dev|run|WHEEL VENV]  — dev (default; tools/test.sh): the package + its [dev] extras (pytest,
# import-linter, copick, …); run (tools/demo.sh): the package alone, what the main job needs (copick
# alone brings ~60 packages). A dev venv serves both.
# The installer is uv (installed into the venv by pip), with pip as the fallback: on the 2-core Xeon a
# run venv took 16 s with uv (cold cache) against 86 s with pip (warm cache), a dev venv 163 s with pip.
# uv does not read pip's configuration: pip's find-links (where a local torch wheel lies) are handed over,
# and pre-releases are refused as pip does.
# Re-running is cheap: the install is skipped while setup.cfg is unchanged.
# setup_env.sh WHEEL VENV: the same two steps into a fresh VENV (any folder), the built wheel instead of
# the checkout (tests/test_wheel.py: a user's install).
set -euo pipefail
want_kind=${1:-dev}
venv=.venv
case "$want_kind" in
  dev) spec=(-e ".[dev]") ;;
  run) spec=(-e .) ;;
  *.whl) spec=("$(realpath "$want_kind")") venv=$(realpath -m "${2:?setup_env.sh: a wheel goes into a venv: setup_env.sh WHEEL VENV}") ;;
  *) echo "setup_env.sh: unknown kind '$want_kind' (use dev or run, or WHEEL VENV)" >&2; exit 2 ;;
esac
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
stamp=$venv/.cryomonai-installed
want=$(sha1sum setup.cfg setup.py | sha1sum | cut -d' ' -f1)
have="" have_kind=""
[ -f "$stamp" ] && read -r have have_kind < "$stamp" || true
[ "$venv" = .venv ] || have=""  # a wheel: always installed
if [ "$have" != "$want" ] || { [ "$want_kind" = dev ] && [ "${have_kind:-dev}" != dev ]; }; then
  pip=("$venv/bin/python" -m pip install -q --disable-pip-version-check)
  if "${pip[@]}" uv 2>/dev/null && [ -x "$venv/bin/uv" ]; then
    links=${PIP_FIND_LINKS:-$("$venv/bin/python" -m pip config get global.find-links 2>/dev/null || true)}
    # no pre-releases, as pip: uv's own default took copick 2.0.0a6 (and with it zarr 3) for [dev] on 2026-11-30
    install=("$venv/bin/uv" pip install -q --python "$venv/bin/python" --prerelease disallow)
    for dir in $links; do install+=(--find-links "$dir"); done
  else
    echo "setup_env.sh: uv not available, installing with pip" >&2
    "${pip[@]}" --upgrade pip
    install=("${pip[@]}")
  fi
  "${install[@]}" torch==2.13.0
  "${install[@]}" "${spec[@]}"
  [ "$venv" != .venv ] || echo "$want $want_kind" > "$stamp"
fi
