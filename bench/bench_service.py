"""Service overhead and worker scaling, measured side by side in one run.

    python bench/bench_service.py [--model NAME] [--latency-jobs 5] [--batch 16]

Compares, for the default adversarial explanation (all targets, the paper's ρ and
steps), the job done in this process (decode → explain → render PNGs, and the core
call alone) with the same job through HTTP + Redis + a worker process, and the
throughput of one and two workers. It starts its own Redis, API and workers, and
gives every computation the same number of torch threads (--threads, default 1),
so two workers on two cores can show their scaling.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from PIL import Image, ImageDraw
from redis import Redis

from aex.service.redis_server import RedisServer, free_port

ROOT = Path(__file__).resolve().parents[1]


def sample_image() -> bytes:
    """A 32×32 picture (a red car-like shape on sky and grass), PNG-encoded."""
    image = Image.new("RGB", (32, 32), (110, 160, 220))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 22, 31, 31), fill=(70, 130, 60))
    draw.rectangle((6, 14, 25, 23), fill=(200, 30, 30))
    draw.ellipse((7, 20, 12, 25), fill=(20, 20, 20))
    draw.ellipse((19, 20, 24, 25), fill=(20, 20, 20))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def model_registry(name: str | None, folder: Path) -> tuple[Path | None, str]:
    """(registry dir or None for the default one, model name) to benchmark."""
    from aex.models import ModelStore, create_model, save_checkpoint

    store = ModelStore()
    try:
        return None, store.get(name or "default").name
    except LookupError:
        if name:
            raise
    kwargs = {"act": "hhrelu", "num_classes": 10, "input_size": 32,
              "mean": [0.4914, 0.4822, 0.4465], "std": [0.247, 0.243, 0.261]}
    model = create_model("resnet44", **kwargs)
    classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
               "ship", "truck"]
    save_checkpoint(model, "bench-resnet44", arch="resnet44", arch_kwargs=kwargs,
                    classes=classes, store=ModelStore(folder))
    print("no default model registered: using an untrained ResNet-44 (same cost)")
    return folder, "bench-resnet44"


class Direct:
    """The job's work in this process: decode, explain (the core call), render PNGs."""

    def __init__(self, model_dir: Path | None, name: str, data: bytes) -> None:
        from aex.models import AdversarialExplainer, ModelStore, load_checkpoint

        self.loaded = load_checkpoint(name, store=ModelStore(model_dir) if model_dir else None)
        self.explainer = AdversarialExplainer(self.loaded.model, classes=self.loaded.classes)
        self.data = data
        self.run()  # warm up

    def run(self) -> tuple[float, float]:
        """(seconds for the whole job, seconds for the core call alone)."""
        import numpy as np
        import torch

        from aex.contract.imaging import open_image, prepare_image
        from aex.models.render import difference_png, grid_png, image_png

        start = time.perf_counter()
        prepared = prepare_image(open_image(self.data, 40_000_000), self.loaded.input_size, 3)
        array = np.asarray(prepared.image, dtype=np.float32) / 255.0
        x = torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0).contiguous()
        core_start = time.perf_counter()
        exp = self.explainer.explain(x, targets="all")
        core = time.perf_counter() - core_start
        pngs = [image_png(x[0]), grid_png([x[0], *exp.images], ["x"] * (1 + len(exp.images)))]
        for t in range(len(exp.images)):
            pngs += [image_png(exp.images[t]), difference_png(exp.perturbations[t])]
        return time.perf_counter() - start, core


class Service:
    """Private Redis + API + N workers, all child processes of this benchmark."""

    def __init__(self, folder: Path, model_dir: Path | None, threads: int) -> None:
        self.folder = folder
        self.redis = RedisServer(folder / "redis").start()
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith("AEX_") or k == "AEX_MODEL_DIR"}
        self.env.update({"AEX_REDIS_URL": self.redis.url, "AEX_TORCH_THREADS": str(threads),
                         "OMP_NUM_THREADS": str(threads), "AEX_MAX_QUEUE": "1000"})
        if model_dir is not None:
            self.env["AEX_MODEL_DIR"] = str(model_dir)
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.api = self._spawn("api", [sys.executable, "-m", "uvicorn", "--factory",
                                       "aex.service.app:create_app", "--port", str(port),
                                       "--log-level", "warning"])
        self.workers: list[subprocess.Popen[bytes]] = []
        self.http = httpx.Client(base_url=self.url, timeout=120)
        deadline = time.monotonic() + 60
        while True:
            try:
                self.http.get("/healthz")
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def _spawn(self, log: str, args: list[str]) -> subprocess.Popen[bytes]:
        with open(self.folder / f"{log}.log", "ab") as fh:
            return subprocess.Popen(args, env=self.env, cwd=ROOT, stdout=fh,
                                    stderr=subprocess.STDOUT)

    def set_workers(self, count: int, model: str) -> None:
        """Exactly ``count`` workers, each with ``model`` loaded and warmed up."""
        for worker in self.workers:
            worker.terminate()
            worker.wait()
        self.workers = [self._spawn(f"worker{i}", [sys.executable, "-m", "aex.worker",
                                                   "--preload", model])
                        for i in range(count)]
        redis = Redis.from_url(self.redis.url)
        while redis.zcount("aex:workers", time.time(), "+inf") < count:
            for i, worker in enumerate(self.workers):
                if worker.poll() is not None:
                    raise RuntimeError(f"worker {i} exited; see {self.folder}/worker{i}.log")
            time.sleep(0.1)
        self.run_batch(count, model)  # one warm-up job each

    def job(self, data: bytes, model: str) -> dict[str, Any]:
        """One explanation, submit to finished result; its view plus ``latency``."""
        start = time.perf_counter()
        accepted = self.http.post("/v1/explanations", files={"image": ("car.png", data)},
                                  data={"model": model, "targets": "all"})
        accepted.raise_for_status()
        while True:
            view = self.http.get(accepted.json()["status_url"], params={"wait": 60}).json()
            if view["status"] == "finished":
                view["latency"] = time.perf_counter() - start
                return view
            if view["status"] in ("failed", "canceled"):
                raise RuntimeError(f"job {view['id']} {view['status']}: {view['error']}")

    def run_batch(self, count: int, model: str) -> float:
        """Submit ``count`` jobs at once; seconds until the last one finished."""
        data = sample_image()
        start = time.perf_counter()
        with ThreadPoolExecutor(count) as pool:
            list(pool.map(lambda _: self.job(data, model), range(count)))
        return time.perf_counter() - start

    def close(self) -> None:
        self.http.close()
        for proc in [*self.workers, self.api]:
            proc.terminate()
            proc.wait()
        self.redis.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="registry name (default: the default model)")
    parser.add_argument("--latency-jobs", type=int, default=5)
    parser.add_argument("--batch", type=int, default=16, help="jobs per throughput run")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="aex-bench-") as tmp:
        folder = Path(tmp)
        model_dir, model = model_registry(args.model, folder / "models")
        data = sample_image()
        print(f"model {model}; {os.cpu_count()} CPUs, load average "
              f"{os.getloadavg()[0]:.1f}; {args.threads} torch thread(s) per process")
        local = Direct(model_dir, model, data)
        service = Service(folder, model_dir, args.threads)
        full, core, views = [], [], []
        try:
            service.set_workers(1, model)
            for _ in range(args.latency_jobs):  # alternate, so both see the same load
                whole, alone = local.run()
                full.append(whole)
                core.append(alone)
                views.append(service.job(data, model))
            one = service.run_batch(args.batch, model)
            service.set_workers(2, model)
            two = service.run_batch(args.batch, model)
        finally:
            service.close()

    def seconds(view: dict[str, Any], a: str, b: str) -> float:
        return (datetime.fromisoformat(view[b]) - datetime.fromisoformat(view[a])).total_seconds()

    full_s, core_s = statistics.median(full), statistics.median(core)
    latency = statistics.median(v["latency"] for v in views)
    outside = statistics.median(v["latency"] - seconds(v, "started_at", "ended_at")
                                for v in views)
    print(f"in-process job (decode+explain+render), median: {full_s:.3f} s "
          f"(core explain alone {core_s:.3f} s)")
    print(f"through HTTP + Redis + worker, median:      {latency:.3f} s "
          f"(HTTP, Redis and queueing outside the worker: {outside:.3f} s)")
    print(f"service overhead: {100 * (latency / full_s - 1):+.1f} % of the in-process job, "
          f"{100 * (latency / core_s - 1):+.1f} % of the core call; HTTP+Redis alone "
          f"{100 * outside / full_s:.1f} % (target <= 5 %)")
    rate_one, rate_two = args.batch / one, args.batch / two
    print(f"throughput, {args.batch} jobs at once: 1 worker {rate_one:.3f} jobs/s, "
          f"2 workers {rate_two:.3f} jobs/s, ratio {rate_two / rate_one:.2f}x "
          f"(target >= 1.8x where the machine has the cores; in-process "
          f"{1 / full_s:.3f} jobs/s; load average now {os.getloadavg()[0]:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
