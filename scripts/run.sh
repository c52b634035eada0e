#!/usr/bin/env bash
# Start the service: sets up .venv (pip install -e '.[dev]') when missing or out of date,
# then runs `aex serve`: the API on http://127.0.0.1:8000, one worker, and an embedded
# Redis when AEX_REDIS_URL is unset and nothing answers on 127.0.0.1:6379. Ctrl-C stops
# everything it started. Arguments are passed on to `aex serve` (see `aex serve --help`).
set -euo pipefail
# shellcheck source=scripts/_venv.sh
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"

aex_venv
cd "$AEX_ROOT"
exec aex serve "$@"
