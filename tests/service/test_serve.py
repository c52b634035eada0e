"""``aex serve``: one command brings up Redis, a worker and the API; a signal stops all."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from aex_service_testing import ROOT, children, service_env

from aex.service.redis_server import free_port


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_serve_runs_the_printed_curl_and_stops_everything(
        model_dir: Path, tmp_path: Path, stop: int) -> None:
    port = free_port()
    env = service_env("unused", model_dir, AEX_DATA_DIR=str(tmp_path / "data"))
    del env["AEX_REDIS_URL"]
    serve = subprocess.Popen(
        [sys.executable, "-m", "aex.cli", "serve", "--port", str(port), "--embedded-redis"],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        lines = []
        assert serve.stdout is not None
        for line in serve.stdout:
            lines.append(line)
            if line.strip().startswith("curl"):
                break
        assert any(f"http://127.0.0.1:{port}" in line for line in lines), lines
        assert any(line.startswith(f"Redis: unix://{tmp_path / 'data'}") for line in lines)
        command = lines[-1].strip()
        started = children(serve.pid)
        assert len(started) == 2  # the private Redis and one worker
        result = subprocess.run(["bash", "-c", command], capture_output=True, text=True,
                                timeout=180, check=True)
        job = json.loads(result.stdout)
        assert job["status"] == "finished", job
        assert job["result"]["model"] == "tiny"
        assert "grid.png" in job["result"]["artifacts"]
        assert re.search(r"\?wait=\d+", command)
    finally:
        serve.send_signal(stop)
        serve.communicate(timeout=60)
    assert serve.returncode == 0
    assert not [pid for pid in started if alive(pid)]


def test_one_serve_per_data_folder(tmp_path: Path) -> None:
    from aex._cli_service import _lock_data_dir
    from aex.cli import CommandError

    held = _lock_data_dir(tmp_path)
    try:
        with pytest.raises(CommandError, match="another `aex serve`"):
            _lock_data_dir(tmp_path)
    finally:
        held.close()
    _lock_data_dir(tmp_path).close()
