"""Fixtures and factories shared by ``tests/service`` and ``tests/worker``.

Real things only: a real Redis that the tests started (a private server on a free port,
or the empty database ``AEX_TEST_REDIS_URL`` names, which ``./scripts/test.sh`` starts),
real worker and API processes, real images made with Pillow, tiny real models.
"""

from __future__ import annotations

import io
import os
import random
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from redis import Redis

from aex.contract.connection import mask_url
from aex.contract.settings import Settings
from aex.service.redis_server import RedisServer, free_port

ROOT = Path(__file__).resolve().parents[2]
TINY_CLASSES = ["cat", "dog", "ship"]
SLOW_CLASSES = [f"class{i}" for i in range(10)]


# images --------------------------------------------------------------------------------

def image_bytes(fmt: str = "PNG", size: tuple[int, int] = (48, 40), mode: str = "RGB") -> bytes:
    """A small real picture (a gradient with a square) encoded as ``fmt``."""
    width, height = size
    image = Image.new(mode, size)
    pixels = image.load()
    for y in range(height):
        for x in range(width):
            value = (x * 255 // width, y * 255 // height, 128)
            if mode == "L":
                value = value[0]
            elif mode == "RGBA":
                value = (*value, 200)
            pixels[x, y] = value
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def noise_png(size: tuple[int, int], seed: int = 0) -> bytes:
    """A PNG of random RGB pixels: about 3 bytes per pixel, since noise does not compress."""
    width, height = size
    pixels = random.Random(seed).randbytes(width * height * 3)
    buffer = io.BytesIO()
    Image.frombytes("RGB", size, pixels).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` × ``height`` but holds almost no pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(
        b"IEND", b"")


def bomb_png(side: int = 3000) -> bytes:
    """A valid PNG of ``side``² black pixels: a few kB that decompress to megabytes."""
    buffer = io.BytesIO()
    Image.new("L", (side, side)).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


# models --------------------------------------------------------------------------------

def make_model(root: Path, name: str, classes: list[str], widths: list[int],
               aliases: list[str] | None = None, act: str = "hhrelu") -> Any:
    """Save an untrained network into the registry at ``root`` (the robust architecture's
    HHReLU, or ``act="relu"`` for a standard one)."""
    import torch

    from aex.models import ModelStore, create_model, save_checkpoint

    torch.manual_seed(0)
    kwargs = {"act": act, "num_classes": len(classes), "widths": widths,
              "input_size": 32, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
    model = create_model("resnet20", **kwargs)
    return save_checkpoint(model, name, arch="resnet20", arch_kwargs=kwargs, classes=classes,
                           aliases=aliases or [], store=ModelStore(root),
                           metrics={"accuracy": 0.5})


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry with ``tiny`` (alias ``default``, 3 classes), ``plain`` (alias
    ``standard``, ReLU, 3 classes) and ``slow`` (10 classes)."""
    root = tmp_path_factory.mktemp("models")
    make_model(root, "tiny", TINY_CLASSES, [4, 8, 8], aliases=["default"])
    make_model(root, "plain", TINY_CLASSES, [4, 8, 8], aliases=["standard"], act="relu")
    make_model(root, "slow", SLOW_CLASSES, [16, 32, 64])
    return root


# redis ---------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The tests' Redis: ``AEX_TEST_REDIS_URL`` (refused unless its database is empty,
    since the tests flush it), else a private server on a free port for the session."""
    given = os.environ.get("AEX_TEST_REDIS_URL")
    if given:
        client = Redis.from_url(given)
        try:
            keys = client.dbsize()
        finally:
            client.close()
        if keys:
            pytest.exit(f"AEX_TEST_REDIS_URL={mask_url(given)} holds {keys} keys; the tests "
                        "flush their database, so give them an empty one (or unset it: "
                        "they start a private Redis)", returncode=4)
        yield given
    else:
        server = RedisServer(tmp_path_factory.mktemp("redis"), port=free_port())
        with server:
            yield server.url


@pytest.fixture
def redis_db(redis_url: str) -> Iterator[Redis]:
    """The test database (the tests' own, see ``redis_url``), flushed before and after."""
    client = Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def service_env(redis_url: str, model_dir: Path, **extra: str) -> dict[str, str]:
    """Environment for an API or worker process under test."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AEX_")}
    env.update({
        "AEX_REDIS_URL": redis_url,
        "AEX_MODEL_DIR": str(model_dir),
        "AEX_TORCH_THREADS": "1",
        "AEX_WORKER_HEARTBEAT_S": "1",
        "OMP_NUM_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
    })
    env.update(extra)
    return env


def make_settings(redis_url: str, model_dir: Path, **overrides: Any) -> Settings:
    """Settings for an in-process app, ignoring the developer's own ``AEX_*`` variables."""
    values: dict[str, Any] = {"redis_url": redis_url, "model_dir": model_dir,
                              "worker_heartbeat_s": 1.0}
    values.update(overrides)
    return Settings(_env_file=None, **values)


# processes -----------------------------------------------------------------------------

class Proc:
    """A child process with its log file; stopped (and reaped) by :meth:`stop`."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self._fh = open(log, "wb")
        self.process = subprocess.Popen(args, env=env, cwd=ROOT, stdout=self._fh,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, timeout: float = 15.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._fh.close()


def start_worker(env: dict[str, str], log: Path, name: str | None = None,
                 preload: str | tuple[str, ...] | None = "tiny") -> Proc:
    """``python -m aex.worker`` as a child process, with the models ``preload`` names."""
    args = [sys.executable, "-m", "aex.worker"]
    if name:
        args += ["--name", name]
    for model in (preload,) if isinstance(preload, str) else preload or ():
        args += ["--preload", model]
    return Proc(args, env, log)


def wait_for_worker(redis: Redis, proc: Proc, timeout: float = 60.0, count: int = 1) -> None:
    """Until ``count`` workers beat (the worker imported torch and preloaded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.process.poll() is not None:
            raise RuntimeError(f"worker exited:\n{proc.output()}")
        if redis.zcount("aex:workers", time.time(), "+inf") >= count:
            return
        time.sleep(0.1)
    raise TimeoutError(f"no worker beat within {timeout} s:\n{proc.output()}")


def start_api(env: dict[str, str], log: Path) -> tuple[Proc, str]:
    """The API under uvicorn in a child process; (process, base URL) once it answers."""
    port = free_port()
    proc = Proc([sys.executable, "-m", "uvicorn", "--factory", "aex.service.app:create_app",
                 "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
                env, log)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.process.poll() is not None:
            raise RuntimeError(f"API exited:\n{proc.output()}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.stop()
    raise TimeoutError(f"API did not answer:\n{proc.output()}")


@contextmanager
def service_stack(redis_url: str, model_dir: Path, logs: Path,
                  preload: tuple[str, ...] = ("tiny",),
                  **extra: str) -> Iterator[dict[str, Any]]:
    """An API process and a worker process on ``redis_url``'s database (flushed before and
    after), with ``extra`` environment variables: ``{"url", "redis", "api", "worker"}``."""
    redis = Redis.from_url(redis_url)
    redis.flushdb()
    env = service_env(redis_url, model_dir, **extra)
    procs: list[Proc] = []
    try:
        api, url = start_api(env, logs / "api.log")
        procs.append(api)
        worker = start_worker(env, logs / "worker.log", name=f"worker-{logs.name}",
                              preload=preload)
        procs.append(worker)
        wait_for_worker(redis, worker)
        yield {"url": url, "redis": redis, "api": api, "worker": worker}
    finally:
        for proc in procs:
            proc.stop()
        redis.flushdb()
        redis.close()


def start_serve(env: dict[str, str], log: Path, *args: str,
                timeout: float = 90.0) -> tuple[Proc, str]:
    """``aex serve`` on a free port in a child process; (process, base URL) once it is
    ready (``/readyz``: Redis takes writes and a worker beats)."""
    port = free_port()
    proc = Proc([sys.executable, "-m", "aex.cli", "serve", "--port", str(port), *args],
                env, log)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.process.poll() is not None:
            raise RuntimeError(f"aex serve exited:\n{proc.output()}")
        try:
            if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.stop()
    raise TimeoutError(f"aex serve was not ready within {timeout} s:\n{proc.output()}")


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def process_name(pid: int) -> str:
    """The command line of ``pid`` (from /proc), words joined by spaces."""
    return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()


def wait_job(client: httpx.Client, job_id: str, timeout: float = 120.0) -> dict[str, Any]:
    """Long-poll a job until it ends; its last view."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = client.get(f"/v1/jobs/{job_id}", params={"wait": 5}, timeout=30)
        response.raise_for_status()
        view = response.json()
        if view["status"] in ("finished", "failed", "canceled"):
            return view
    raise TimeoutError(f"job {job_id} did not end within {timeout} s")


def wait_until(predicate: Any, timeout: float = 60.0, interval: float = 0.1) -> Any:
    """Poll ``predicate()`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError("condition not met in time")
