"""``pip install '.[client]'`` into a fresh venv: no torch, no web framework, and the
client (the Python API and ``aex remote``) works against a running service."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from aex_service_testing import (
    image_bytes,
    service_env,
    start_api,
    start_worker,
    wait_for_worker,
)
from redis import Redis

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def client_venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A venv with only ``aex[client]`` installed from this checkout, pinned by the lock."""
    tmp = tmp_path_factory.mktemp("client-venv")
    source = tmp / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", ".cache", "runs", "test-artifacts", "__pycache__", "*.egg-info",
        "build", "tests", "bench", "docs"))
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    proc = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check",
         "-c", str(ROOT / "requirements.lock"), f"{source}[client]"],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    yield venv
    shutil.rmtree(tmp, ignore_errors=True)


def test_client_install_has_no_torch_or_web_framework(client_venv: Path, tmp_path: Path) -> None:
    python = str(client_venv / "bin" / "python")
    for module in ("torch", "fastapi", "redis", "rq", "numpy"):
        proc = subprocess.run([python, "-c", f"import {module}"], cwd=tmp_path,
                              capture_output=True, timeout=60)
        assert proc.returncode != 0, f"{module} is installed with aex[client]"
    help_text = subprocess.run([str(client_venv / "bin" / "aex"), "remote", "--help"],
                               cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert help_text.returncode == 0 and "explain" in help_text.stdout, help_text.stderr


def test_client_works_against_a_running_service(client_venv: Path, tmp_path: Path,
                                                redis_db: Redis, redis_url: str,
                                                model_dir: Path) -> None:
    env = service_env(redis_url, model_dir)
    api, url = start_api(env, tmp_path / "api.log")
    worker = start_worker(env, tmp_path / "worker.log")
    try:
        wait_for_worker(redis_db, worker)
        image = tmp_path / "picture.png"
        image.write_bytes(image_bytes())
        aex = str(client_venv / "bin" / "aex")
        listed = subprocess.run([aex, "remote", "--url", url, "models", "--json"],
                                cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert listed.returncode == 0, listed.stderr
        names = sorted(m["name"] for m in json.loads(listed.stdout))
        assert "tiny" in names
        explained = subprocess.run(
            [aex, "remote", "--url", url, "explain", str(image), "--targets", "predicted",
             "--steps", "3", "--json", "--out", str(tmp_path / "out")],
            cwd=tmp_path, capture_output=True, text=True, timeout=180)
        assert explained.returncode == 0, explained.stderr
        result = json.loads(explained.stdout[:explained.stdout.rindex("}") + 1])
        assert result["model"] == "tiny" and len(result["targets"]) == 1
        assert (tmp_path / "out" / "grid.png").read_bytes().startswith(b"\x89PNG")
        code = ("import sys; from aex.client import Client; "
                "print(sorted(m['name'] for m in Client(sys.argv[1]).models()))")
        named = subprocess.run([str(client_venv / "bin" / "python"), "-c", code, url],
                               cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert named.returncode == 0 and named.stdout.strip() == str(names), named.stderr
        assert httpx.get(f"{url}/healthz").status_code == 200
    finally:
        worker.stop()
        api.stop()
