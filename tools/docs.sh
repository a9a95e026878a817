#!/usr/bin/env bash
# Build the documentation site (mkdocs.yml, sources in docs/) strictly: every warning is an error, and
# broken internal links and anchors are warnings (mkdocs.yml's `validation:`), so a moved file fails the
# build. External links are not checked (CI reaches only package registries).
# Installs nothing: it needs the [docs] extra in .venv (after tools/setup_env.sh:
# `.venv/bin/uv pip install --python .venv/bin/python -e ".[docs]"`; .ci/run does that).
# Usage: docs.sh [OUT]   build into OUT (default: a temporary folder, removed afterwards)
#        docs.sh --serve  serve the site at http://127.0.0.1:8000 while you edit
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
mkdocs=.venv/bin/mkdocs
[ -x "$mkdocs" ] || { echo "docs.sh: $mkdocs missing: install the [docs] extra first (.venv/bin/uv pip install --python .venv/bin/python -e \".[docs]\")" >&2; exit 2; }
export NO_MKDOCS_2_WARNING=1   # Material's end-of-life banner, not a problem with these docs
if [ "${1:-}" = --serve ]; then exec "$mkdocs" serve --strict; fi
out=${1:-}
if [ -z "$out" ]; then out=$(mktemp -d); trap 'rm -rf "$out"' EXIT; fi
"$mkdocs" build --strict --site-dir "$out"   # not --quiet: it drops the warnings that strict counts
echo "docs.sh: built strictly into $out"
