"""Peak memory of the API process under 8 concurrent maximum-size uploads.

    python bench/bench_api_memory.py [--uploads 8]

Starts its own Redis and one API process (uvicorn, the default settings: 10 MiB uploads,
16.8-megapixel images), then sends ``--uploads`` explanations at once, twice: images at
the pixel limit (4096 × 4096, a small file that decompresses to 16.8 M pixels) and images
at the byte limit (random pixels, just under 10 MiB). It reads the API process's resident
memory from /proc (``VmRSS`` idle, ``VmHWM`` its peak) and prints them beside what
decoding the same images in full would hold, which is what the API did before it checked
uploads without decoding them.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from PIL import Image

from aex.contract.settings import Settings
from aex.service.redis_server import RedisServer, free_port

ROOT = Path(__file__).resolve().parents[1]
MIB = 1024 * 1024


def status_kib(pid: int, field: str) -> int:
    """A ``/proc/<pid>/status`` memory field (``VmRSS``, ``VmHWM``) in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise KeyError(field)


def pixel_limit_png(side: int) -> bytes:
    """An RGB PNG of ``side``² pixels with a pattern: small on disk, huge decoded."""
    image = Image.new("RGB", (side, side), (110, 160, 220))
    image.paste((200, 30, 30), (side // 4, side // 4, 3 * side // 4, 3 * side // 4))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def byte_limit_png(limit: int) -> tuple[bytes, tuple[int, int]]:
    """An RGB PNG of random pixels just under ``limit`` bytes, and its size."""
    side = int((limit / 3.02) ** 0.5)
    while True:
        pixels = random.Random(0).randbytes(side * side * 3)
        buffer = io.BytesIO()
        Image.frombytes("RGB", (side, side), pixels).save(buffer, format="PNG", compress_level=1)
        if buffer.tell() <= limit:
            return buffer.getvalue(), (side, side)
        side -= 16


def start_api(redis_url: str, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AEX_")}
    env.update(AEX_REDIS_URL=redis_url, AEX_MAX_QUEUE="10000", OMP_NUM_THREADS="1")
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "aex.service.app:create_app",
         "--port", str(port), "--log-level", "warning"],
        env=env, cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"the API did not start; see {log}")


def submit_all(url: str, data: bytes, count: int) -> list[int]:
    def one(_: int) -> int:
        with httpx.Client(base_url=url, timeout=120) as client:
            return client.post("/v1/explanations", files={"image": ("x.png", data)}).status_code

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uploads", type=int, default=8, help="uploads sent at once")
    args = parser.parse_args()
    settings = Settings(_env_file=None)
    side = int(settings.max_pixels ** 0.5)
    pixels = pixel_limit_png(side)
    heavy, heavy_size = byte_limit_png(settings.max_upload_bytes)
    with tempfile.TemporaryDirectory() as folder, \
            RedisServer(Path(folder) / "redis", port=free_port()) as redis:
        api, url = start_api(redis.url, Path(folder) / "api.log")
        try:
            submit_all(url, pixel_limit_png(64), 2)  # warm up every code path
            idle = status_kib(api.pid, "VmRSS")
            print(f"API process idle: {idle / 1024:.0f} MiB resident")
            for name, data, size, bands in (
                (f"{side}×{side} PNG at the pixel limit", pixels, (side, side), 3),
                (f"{heavy_size[0]}×{heavy_size[1]} PNG at the byte limit", heavy, heavy_size, 3),
            ):
                answers = submit_all(url, data, args.uploads)
                peak = status_kib(api.pid, "VmHWM")
                decoded = size[0] * size[1] * bands * args.uploads / MIB
                print(f"{args.uploads} × {name} ({len(data) / MIB:.2f} MiB each, answers "
                      f"{sorted(set(answers))}): peak {peak / 1024:.0f} MiB, "
                      f"{(peak - idle) / 1024:.0f} MiB over idle; decoding them in full "
                      f"would hold {decoded:.0f} MiB of pixels")
        finally:
            api.terminate()
            api.wait(30)


if __name__ == "__main__":
    main()
