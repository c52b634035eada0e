"""ARA: the paper's algorithm, ours at the same settings, and ours fast, on the same images.

Three runs per mode, timed in one run: the paper's algorithm (``_paper.py``: method.md §3
written out, every image attacked at the reference settings, eps 20, 450 steps, momentum
0.9), ``ara()`` at the same settings (images already defeated skip the routine, the
inference copy of the network: exact up to float rounding), and ``ara()`` at the fast
settings (``FAST_SETTINGS``: the per-image refinement). Each row prints its time ratio and
the relative change of its ARA against the paper's algorithm and against ``ara()`` at the
reference settings. Efficiency is against the float32 matrix-multiply peak timed before
and after, with the convolutions' FLOPs of every routine pass actually run (forward +
input gradient).

    python bench/bench_ara.py [--model ref-robust] [--n-images 100] [--threads N]

MODEL is a registry name (import the paper's checkpoints first with
``aex models import-reference``) or a checkpoint path; the images are the seeded
evaluation subset of the CIFAR-10 JPEG test set in ``$AEX_SHARED_DIR``.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch
from _machine import MatmulPeak, describe, efficiency, forward_flops
from _paper import paper_routine

from aex.models import (
    FAST_SETTINGS,
    REFERENCE_SETTINGS,
    ModelStore,
    ara,
    evaluation_indices,
    load_checkpoint,
    load_image_folder,
)
from aex.models._ara import ara_from_radii
from aex.models.data import extract_tar


def cifar_test_dir() -> Path:
    """Extract (once) and return the JPEG test split from ``$AEX_SHARED_DIR``."""
    repo = Path(__file__).resolve().parent.parent
    shared = Path(os.environ.get("AEX_SHARED_DIR") or repo.parent / "shared")
    archive = shared / "datasets" / "cifar10-jpeg" / "test.tar.gz"
    if not archive.is_file():
        raise SystemExit(f"{archive} not found: set AEX_SHARED_DIR")
    cache = Path(os.environ.get("AEX_CACHE_DIR") or repo / ".cache")
    return extract_tar(archive, cache / "data") / "test"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ref-robust")
    parser.add_argument("--model-dir", type=Path)
    parser.add_argument("--n-images", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--threads", type=int)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    store = ModelStore(args.model_dir) if args.model_dir else ModelStore()
    loaded = load_checkpoint(args.model, store=store)
    data = load_image_folder(cifar_test_dir(), loaded.input_size[0])
    idx = evaluation_indices(len(data), args.n_images)
    x, y = data.floats(idx), data.labels[idx]
    matmul = MatmulPeak()
    peaks = [matmul.gflops(_seconds(matmul))]
    per_pass = 2 * forward_flops(loaded.model, x[:1])
    print(f"{loaded.name}: {len(y)} images, {torch.get_num_threads()} threads")
    print(f"{'':6s} {'':38s} {'':8s} {'':8s} {'vs the paper':>17s} {'vs ara() reference':>19s}")
    print(f"{'mode':6s} {'run':38s} {'seconds':>8s} {'ARA':>8s} {'ratio':>7s} {'change':>9s} "
          f"{'ratio':>7s} {'change':>9s} {'passes':>7s}")
    ref = REFERENCE_SETTINGS
    for mode in ("l2min", "btr"):

        def paper_run(_mode: str = mode) -> tuple[float, int]:
            radii = torch.cat([
                paper_routine(loaded.model, x[i:i + args.batch_size], y[i:i + args.batch_size],
                              _mode, ref["eps"], ref["steps"], ref["overshoot"],
                              ref["momentum"]).flatten(1).pow(2).mean(1).sqrt()
                for i in range(0, len(y), args.batch_size)])
            return ara_from_radii(radii, len(loaded.classes))[0], len(y) * (ref["steps"] + 1)

        def ours(settings: dict, _mode: str = mode) -> tuple[float, int]:
            res = ara(loaded.model, x, y, mode=_mode, batch_size=args.batch_size, strict=False,
                      **settings)
            return res.value, res.passes

        rows: dict[str, tuple[float, float, int]] = {}
        for label, run in (
            ("paper's algorithm, reference settings", paper_run),
            ("ara(), reference settings", lambda: ours(ref)),
            ("ara(), fast (FAST_SETTINGS, refined)", lambda: ours(FAST_SETTINGS)),
        ):
            begin = time.perf_counter()
            value, passes = run()
            seconds = time.perf_counter() - begin
            rows[label] = (seconds, value, passes)
            against = [f"{base_s / seconds:6.2f}× {_change(value, base_v):+9.2%}"
                       for base_s, base_v, _ in list(rows.values())[:2]]
            print(f"{mode:6s} {label:38s} {seconds:8.1f} {value:8.5f} {against[0]} "
                  f"{against[1] if len(against) > 1 else '':17s} {passes:7d}", flush=True)
        peaks.append(matmul.gflops(_seconds(matmul)))
        for label, (seconds, _, passes) in rows.items():
            print(f"{mode:6s}   {label:36s} "
                  f"{efficiency(passes * per_pass, seconds, max(peaks))}")
    print(describe(max(peaks), "best call before and after each mode")
          + f"; assumed {per_pass / 1e9:.3f} GFLOP per image and pass")


def _change(value: float, base: float) -> float:
    """Relative change of ``value`` against ``base`` (NaN when ``base`` is 0)."""
    return (value - base) / base if base else float("nan")


def _seconds(fn: object) -> float:
    begin = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - begin


if __name__ == "__main__":
    main()
