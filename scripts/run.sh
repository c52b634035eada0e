#!/usr/bin/env bash
# Start the service: sets up .venv (pip install -e '.[dev]') when missing or out of date,
# then runs `aex serve`: the API on http://127.0.0.1:8000, one worker, and an embedded
# Redis (its data kept in AEX_DATA_DIR) when AEX_REDIS_URL is unset and nothing answers on
# 127.0.0.1:6379; it prints which Redis it uses and restarts a worker or its Redis that
# dies. Ctrl-C stops everything it started. Arguments are passed on to `aex serve`.
set -euo pipefail
# shellcheck source=scripts/_venv.sh
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"

aex_venv
cd "$AEX_ROOT"
exec aex serve "$@"
