"""One-command GPU check (under 3 minutes on one GPU): does the product run on CUDA?

    python bench/gpu_check.py                 # on a machine with a GPU
    python bench/gpu_check.py --device cpu    # dry run of the same plumbing on the CPU

Checks, one line each (``ok``/``FAIL``/``skip``, seconds, detail), exit status 1 on any
failure:

1. ``train``: two robust training steps through ``torchrun --nproc-per-node 1`` (a
   process group of one: NCCL on CUDA, gloo on the CPU), so every collective of
   distributed training runs once;
2. ``train --amp``: the same with bfloat16 autocast (CUDA only: skipped on the CPU);
3. ``explain``: one explanation job through ``aex serve`` (its own Redis, API and a real
   worker process) with ``AEX_DEVICE`` set, read back through the Python client; the
   worker's log must say the model was loaded on that device;
4. ``ara``: ``aex evaluate --device ...`` on 16 images (attack and BTR ARA).

Images come from ``--data`` (an ImageFolder tree with CIFAR-10's class folders, e.g.
``../shared`` extracted into ``.cache/data/test``) or, by default, are generated: the
check proves that things run, not how well. The dry run uses cheaper ARA settings.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
           "truck"]
IMAGES_PER_CLASS = 4


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_images(folder: Path, per_class: int = IMAGES_PER_CLASS) -> Path:
    """A small ImageFolder tree of seeded random 32×32 PNGs with CIFAR-10's class names."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in CLASSES:
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / name / f"{i}.png")
    return folder


def _run(command: list[str], env: dict[str, str], timeout: float) -> str:
    """Run ``command``; its output, or ``RuntimeError`` with the output's tail."""
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"exit {done.returncode}: {(done.stderr or done.stdout)[-800:]}")
    return done.stdout


def check_train(data: Path, work: Path, env: dict[str, str], amp: bool) -> str:
    out = work / ("train-amp" if amp else "train")
    _run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "1",
          "--master-port", str(_free_port()), "-m", "aex.cli", "train", "--train-dir",
          str(data), "--arch", "resnet20", "--robust", "--epochs", "1", "--max-batches", "2",
          "--batch-size", "16", "--seed", "0", "--out", str(out), "--no-progress",
          *(["--amp"] if amp else [])], env, timeout=150)
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    if not log or log[-1]["images"] != 32:
        raise RuntimeError(f"expected one epoch of 2 × 16 images, the log says {log}")
    loss = log[-1]["loss"]
    if loss != loss:  # NaN
        raise RuntimeError("the loss is NaN")
    return f"2 steps, loss {loss:.3f}, psi {log[-1]['psi']:.4g}"


def check_explain(data: Path, work: Path, env: dict[str, str], device: str) -> str:
    from aex.client import Client

    port = _free_port()
    serve_env = {**env, "AEX_DEVICE": device, "AEX_DATA_DIR": str(work / "serve-data"),
                 "AEX_MODEL_DIR": str(work / "registry")}
    serve_env.pop("AEX_REDIS_URL", None)
    log_path = work / "serve.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "aex.cli", "serve", "--embedded-redis", "--port", str(port),
             "--workers", "1"], env=serve_env, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL)
    try:
        image = next(data.glob("*/*.png"))
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        with Client(url) as client:
            while True:
                try:
                    client.models()
                    break
                except Exception:
                    if server.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError("aex serve did not answer: "
                                           + log_path.read_text()[-800:]) from None
                    time.sleep(0.5)
            job = client.explain(image, targets="predicted", timeout=90)
        result = job.result  # type: ignore[union-attr]
        wanted = f"on {device}"
        if not any(wanted in line and "loaded model" in line
                   for line in log_path.read_text().splitlines()):
            raise RuntimeError(f"the worker's log does not say it loaded the model {wanted}")
        target = result["targets"][0]
        return (f"{result['model']} → {target['class']} (p {target['probability_before']:.2f}"
                f" → {target['probability_after']:.2f}), worker on {device}")
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def check_ara(data: Path, env: dict[str, str], device: str) -> str:
    # Not strict: generated images may settle late; this checks that ARA runs, not its value.
    cheap = ["--eps", "2", "--steps", "20"] if device == "cpu" else []
    out = _run([sys.executable, "-m", "aex.cli", "evaluate", "default", "--data", str(data),
                "--n-images", "16", "--device", device, "--json", "--no-progress",
                "--no-strict", *cheap], env, timeout=150)
    report = json.loads(out)
    if report["n_images"] != 16:
        raise RuntimeError(f"evaluated {report['n_images']} images, not 16")
    return (f"attack {report['ara_attack']:.4f}, BTR {report['ara_btr']:.4f} "
            f"(censored {report['ara_attack_censored']}/{report['ara_btr_censored']})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"],
                        help="cuda (the check) or cpu (a dry run of the same plumbing)")
    parser.add_argument("--data", type=Path, help="ImageFolder tree (default: generated)")
    args = parser.parse_args(argv)
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "2")
    if args.device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""  # every child, torchrun included, on the CPU
    else:
        import torch

        if not torch.cuda.is_available():
            print("FAIL  cuda: no CUDA device is visible (use --device cpu for a dry run)")
            return 1
    failed = False
    with tempfile.TemporaryDirectory(prefix="aex-gpu-check-") as tmp:
        work = Path(tmp)
        data = args.data or make_images(work / "images")
        checks: list[tuple[str, Callable[[], str] | None]] = [
            ("train", lambda: check_train(data, work, env, amp=False)),
            ("train --amp", None if args.device == "cpu"
             else lambda: check_train(data, work, env, amp=True)),
            ("explain", lambda: check_explain(data, work, env, args.device)),
            ("ara", lambda: check_ara(data, env, args.device)),
        ]
        for name, check in checks:
            if check is None:
                print(f"skip  {name:12s}        needs CUDA", flush=True)
                continue
            start = time.monotonic()
            try:
                detail, status = check(), "ok  "
            except Exception as exc:  # one line per check, whatever went wrong
                detail, status, failed = f"{type(exc).__name__}: {exc}", "FAIL", True
            print(f"{status}  {name:12s} {time.monotonic() - start:5.1f}s  {detail}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
