"""docker-compose.yml (and the CPU-only override) as `docker-compose config` renders them.

There is no Docker engine here: Debian's `docker-compose` (1.29) parses, validates and
interpolates the files without one. Skipped when the binary is absent (.ci/run installs it).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
BASE = "docker-compose.yml"
CPU = "docker-compose.cpu.yml"
MODEL_DIR = "/var/lib/aex/models"
# Variables the compose files pass through with the code's default when unset on the host.
PASSED_DEFAULTS = {"AEX_MAX_UPLOAD_BYTES", "AEX_MAX_QUEUE", "AEX_JOB_TIMEOUT_S", "AEX_RESULT_TTL_S"}
COMPOSE = shutil.which("docker-compose")

pytestmark = pytest.mark.skipif(
    COMPOSE is None,
    reason="docker-compose is not installed (apt-get install docker-compose; .ci/run does)",
)


def render(*files: str, **env: str) -> dict[str, Any]:
    """`docker-compose -f ... config` parsed; host AEX_* variables are not passed on."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AEX_", "COMPOSE_"))}
    clean.update(env)
    args = [COMPOSE]
    for f in files:
        args += ["-f", f]
    proc = subprocess.run(
        [*args, "config"], cwd=REPO_ROOT, env=clean, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, f"docker-compose config rejected {files}:\n{proc.stderr}"
    return yaml.safe_load(proc.stdout)


def seconds(duration: str | int) -> float:
    """A compose duration ('660s', '11m', '1m30s', '1h') in seconds."""
    if isinstance(duration, int | float):
        return float(duration)
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|m|s|ms|us)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    scale = {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6}
    return sum(float(n) * scale[u] for n, u in parts)


def started(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Services a plain `docker compose up` starts (no profile)."""
    return {n: s for n, s in config["services"].items() if not s.get("profiles")}


def command_words(service: dict[str, Any]) -> list[str]:
    cmd = service.get("command", [])
    return cmd.split() if isinstance(cmd, str) else [str(w) for w in cmd]


def healthcheck_text(service: dict[str, Any]) -> str:
    test = service.get("healthcheck", {}).get("test", [])
    return test if isinstance(test, str) else " ".join(map(str, test))


def gpu_devices(service: dict[str, Any]) -> list[dict[str, Any]]:
    deploy = service.get("deploy") or {}
    devices = ((deploy.get("resources") or {}).get("reservations") or {}).get("devices") or []
    return [d for d in devices if "gpu" in d.get("capabilities", [])]


def named_volume_at(config: dict[str, Any], service: dict[str, Any], target: str) -> str | None:
    for vol in service.get("volumes", []):
        if isinstance(vol, str):
            source, _, rest = vol.partition(":")
            dest = rest.split(":")[0]
        else:
            source, dest = vol.get("source"), vol.get("target")
        if dest == target and source in (config.get("volumes") or {}):
            return source
    return None


def workers(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in started(config).items() if "worker" in command_words(s)}


@pytest.fixture(scope="module")
def base() -> dict[str, Any]:
    return render(BASE)


@pytest.fixture(scope="module")
def cpu() -> dict[str, Any]:
    return render(BASE, CPU)


def test_services(base: dict[str, Any]) -> None:
    assert set(started(base)) == {"redis", "api", "worker"}


def test_redis_is_durable_and_checked(base: dict[str, Any]) -> None:
    redis = base["services"]["redis"]
    cmd = " ".join(command_words(redis))
    assert "--appendonly yes" in cmd
    assert "--appendfsync everysec" in cmd
    assert "--maxmemory-policy noeviction" in cmd
    assert named_volume_at(base, redis, "/data"), "Redis data must live in a named volume"
    assert "redis-cli" in healthcheck_text(redis) and "ping" in healthcheck_text(redis)


def test_api(base: dict[str, Any], check_app_target: Callable[[list[str]], None]) -> None:
    api = base["services"]["api"]
    ports = [
        (str(p["published"]), str(p["target"])) if isinstance(p, dict) else tuple(p.split(":")[-2:])
        for p in api["ports"]
    ]
    assert ("8000", "8000") in ports
    assert "/healthz" in healthcheck_text(api)
    assert api["depends_on"]["redis"]["condition"] == "service_healthy"
    assert command_words(api)[0] == "uvicorn"
    check_app_target(command_words(api))
    assert api["build"]["target"] == "api", "the API runs the torch-free image"


def test_worker(base: dict[str, Any]) -> None:
    worker = base["services"]["worker"]
    assert command_words(worker)[-2:] == ["aex", "worker"]
    assert worker["build"]["target"] == "worker"
    assert gpu_devices(worker) and gpu_devices(worker)[0]["driver"] == "nvidia"
    assert worker["depends_on"]["redis"]["condition"] == "service_healthy"
    job_timeout = float(worker["environment"]["AEX_JOB_TIMEOUT_S"])
    assert job_timeout == 600
    assert seconds(worker["stop_grace_period"]) > job_timeout
    assert worker["deploy"]["replicas"] == 1


def test_worker_replicas_and_timeout_are_settable() -> None:
    config = render(BASE, AEX_WORKERS="3", AEX_JOB_TIMEOUT_S="300")
    worker = config["services"]["worker"]
    assert worker["deploy"]["replicas"] == 3
    assert float(worker["environment"]["AEX_JOB_TIMEOUT_S"]) == 300
    assert seconds(worker["stop_grace_period"]) > 300


def test_model_registry_volume(base: dict[str, Any]) -> None:
    for name in ("api", "worker"):
        service = base["services"][name]
        assert service["environment"]["AEX_MODEL_DIR"] == MODEL_DIR
        assert named_volume_at(base, service, MODEL_DIR), f"{name}: no named volume at {MODEL_DIR}"


def test_cpu_override(cpu: dict[str, Any]) -> None:
    up = started(cpu)
    assert {"redis", "api"} <= set(up)
    found = workers(cpu)
    assert found, "the CPU override starts no worker"
    for name, service in up.items():
        assert not gpu_devices(service), f"{name} still reserves a GPU with the CPU override"
        if service.get("build", {}).get("target") == "worker":
            assert service["build"]["args"]["TORCH_VARIANT"] == "cpu", name
    for service in found.values():
        assert service["environment"]["AEX_DEVICE"] == "cpu"
        assert seconds(service["stop_grace_period"]) > float(
            service["environment"]["AEX_JOB_TIMEOUT_S"]
        )
        assert named_volume_at(cpu, service, MODEL_DIR)
        assert service["deploy"]["replicas"] == 1
    assert render(BASE, CPU, AEX_WORKERS="2")["services"]["worker-cpu"]["deploy"]["replicas"] == 2


@pytest.mark.parametrize("files", [(BASE,), (BASE, CPU)], ids=["base", "cpu"])
def test_every_service_is_restarted(files: tuple[str, ...]) -> None:
    """A container that dies (a worker killed, Redis out of memory) comes back by itself."""
    for name, service in started(render(*files)).items():
        assert service.get("restart") in ("always", "unless-stopped"), name


@pytest.mark.parametrize("files", [(BASE,), (BASE, CPU)], ids=["base", "cpu"])
def test_environment_names_and_defaults_match_the_settings(files: tuple[str, ...]) -> None:
    """Every AEX_* variable the containers get is a setting the code reads; defaults agree."""
    settings = pytest.importorskip("aex.contract.settings").Settings
    fields = {f"AEX_{name.upper()}": field for name, field in settings.model_fields.items()}
    config = render(*files)
    for name, service in config["services"].items():
        for var, value in (service.get("environment") or {}).items():
            assert var in fields, f"{name}: {var} is not a setting (aex/contract/settings.py)"
            default = fields[var].default
            if var in PASSED_DEFAULTS and isinstance(default, int | float):
                assert float(value) == default, f"{name}: {var}={value}, the code says {default}"
