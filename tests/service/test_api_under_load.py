"""A real API process (uvicorn) under load: memory with 8 concurrent maximum-size uploads
(``bench/bench_api_memory.py`` prints the figures), the queue limit under concurrent
submissions, and health checks while Redis hangs."""

from __future__ import annotations

import io
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from aex_service_testing import image_bytes, noise_png, service_env, start_api
from PIL import Image
from redis import Redis

from aex.contract.settings import DEFAULT_MAX_PIXELS

UPLOADS = 8
REQUEST_THREADS = 40  # the thread pool that Starlette runs blocking routes on
MIB = 1024 * 1024
MAX_UPLOAD = 10 * MIB


def resident_kib(pid: int, field: str) -> int:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of ``pid`` in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise KeyError(field)


def at_the_pixel_limit() -> bytes:
    """An RGB PNG of exactly the default pixel limit: a few kB that decode to 64 MiB."""
    side = int(DEFAULT_MAX_PIXELS ** 0.5)
    image = Image.new("RGB", (side, side), (110, 160, 220))
    image.paste((200, 30, 30), (side // 4, side // 4, side // 2, side // 2))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def send_all(url: str, data: bytes) -> set[int]:
    def one(_: int) -> int:
        with httpx.Client(base_url=url, timeout=120) as client:
            return client.post("/v1/explanations", files={"image": ("x.png", data)}).status_code

    with ThreadPoolExecutor(UPLOADS) as pool:
        return set(pool.map(one, range(UPLOADS)))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_eight_maximum_uploads_stay_within_their_bytes(redis_url: str, model_dir: Path,
                                                        redis_db: Redis,
                                                        tmp_path: Path) -> None:
    env = service_env(redis_url, model_dir, AEX_MAX_UPLOAD_BYTES=str(MAX_UPLOAD))
    api, url = start_api(env, tmp_path / "api.log")
    try:
        assert send_all(url, image_bytes()) == {202}  # every code path warm
        idle = resident_kib(api.pid, "VmRSS")
        assert send_all(url, at_the_pixel_limit()) == {202}
        # decoded, eight would hold 8 × 64 MiB; checked from their headers, almost nothing
        assert resident_kib(api.pid, "VmHWM") - idle < 48 * 1024, api.output()
        heavy = noise_png((1800, 1800))
        assert 9 * MIB < len(heavy) <= MAX_UPLOAD
        assert send_all(url, heavy) == {202}
        # about one copy of each upload at a time, never a decoded frame
        assert resident_kib(api.pid, "VmHWM") - idle < (UPLOADS * 1.5 * MAX_UPLOAD) // 1024
    finally:
        api.stop()


def test_queue_limit_holds_under_concurrent_submissions(redis_url: str, model_dir: Path,
                                                         redis_db: Redis,
                                                         tmp_path: Path) -> None:
    env = service_env(redis_url, model_dir, AEX_MAX_QUEUE="10")
    api, url = start_api(env, tmp_path / "api.log")
    try:
        def one(_: int) -> int:
            with httpx.Client(base_url=url, timeout=60) as client:
                return client.post("/v1/explanations",
                                   files={"image": ("x.png", image_bytes())}).status_code

        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(one, range(48)))
        assert answers.count(202) == 10 and answers.count(429) == 38, answers
        assert redis_db.llen("rq:queue:aex") == 10
    finally:
        api.stop()


def test_health_answers_while_redis_hangs(model_dir: Path, tmp_path: Path) -> None:
    """A "Redis" that accepts connections and never answers: requests that need it wait
    out their socket timeout (holding every request thread); ``/healthz`` answers at once
    and ``/readyz`` says Redis is unreachable within seconds."""
    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(256)
        port = hung.getsockname()[1]
        api, url = start_api(service_env(f"redis://127.0.0.1:{port}/0", model_dir),
                             tmp_path / "api.log")
        try:
            def stuck(_: int) -> int:
                with httpx.Client(base_url=url, timeout=60) as client:
                    return client.get(f"/v1/jobs/{'0' * 32}").status_code

            with ThreadPoolExecutor(REQUEST_THREADS) as pool:
                waiting = pool.map(stuck, range(REQUEST_THREADS))
                time.sleep(1.0)  # every request thread of the API now waits on Redis
                start = time.monotonic()
                assert httpx.get(f"{url}/healthz", timeout=30).status_code == 200
                assert time.monotonic() - start < 1.0
                start = time.monotonic()
                ready = httpx.get(f"{url}/readyz", timeout=30)
                assert ready.status_code == 503 and "unreachable" in ready.json()["detail"]
                assert time.monotonic() - start < 5.0
                assert set(waiting) == {503}
        finally:
            api.stop()
