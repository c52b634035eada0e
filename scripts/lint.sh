#!/usr/bin/env bash
# Lint and type-check: `ruff check .` over the repository, then mypy over the public
# packages (the aex namespace: aex/, models/, service/, worker/). Sets up .venv like
# scripts/test.sh. Exits non-zero on any finding.
#
# mypy reads modules from folders named as their import path, while the repository maps
# models/, service/ and worker/ into aex (pyproject.toml); so mypy runs on a tree of links
# in .cache/typecheck/aex that has the installed layout.
set -uo pipefail
# shellcheck source=scripts/_venv.sh
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
aex_venv || exit 1
cd "$AEX_ROOT" || exit 1

tree="$AEX_ROOT/.cache/typecheck"
rm -rf "$tree"
mkdir -p "$tree/aex"
for entry in aex/*; do
    ln -s "$AEX_ROOT/$entry" "$tree/aex/"
done
for package in models service worker; do
    ln -s "$AEX_ROOT/$package" "$tree/aex/$package"
done

status=0
aex_log "ruff check ."
"$AEX_PYTHON" -m ruff check . || status=1
aex_log "mypy -p aex (config: pyproject.toml [tool.mypy])"
(cd "$tree" && "$AEX_PYTHON" -m mypy --config-file "$AEX_ROOT/pyproject.toml" -p aex) || status=1
exit "$status"
