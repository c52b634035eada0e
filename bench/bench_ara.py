"""ARA at the reference settings against the fast settings, side by side on the same images.

Three runs per mode: the reference algorithm as published (every image attacked), the same
settings skipping images already defeated unperturbed (exact), and the fast settings.

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

from aex.models import (
    FAST_SETTINGS,
    REFERENCE_SETTINGS,
    ModelStore,
    ara,
    evaluation_indices,
    load_checkpoint,
    load_image_folder,
)
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
    parser.add_argument("--fast-eps", type=float, default=FAST_SETTINGS["eps"])
    parser.add_argument("--fast-steps", type=int, default=FAST_SETTINGS["steps"])
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    store = ModelStore(args.model_dir) if args.model_dir else ModelStore()
    loaded = load_checkpoint(args.model, store=store)
    data = load_image_folder(cifar_test_dir(), loaded.input_size[0])
    idx = evaluation_indices(len(data), args.n_images)
    x, y = data.floats(idx), data.labels[idx]
    fast = {**FAST_SETTINGS, "eps": args.fast_eps, "steps": args.fast_steps}
    print(f"{loaded.name}: {len(y)} images, {torch.get_num_threads()} threads")
    print(f"{'mode':6s} {'settings':34s} {'seconds':>8s} {'ARA':>8s}")
    runs = (
        ("reference", REFERENCE_SETTINGS, False),
        ("reference+skip", REFERENCE_SETTINGS, True),
        ("fast", fast, True),
    )
    for mode in ("l2min", "btr"):
        results = {}
        for label, settings, skip in runs:
            start = time.perf_counter()
            res = ara(loaded.model, x, y, mode=mode, batch_size=args.batch_size,
                      strict=False, skip_defeated=skip, **settings)
            seconds = time.perf_counter() - start
            results[label] = (seconds, res.value)
            desc = f"{label} eps={settings['eps']:g} steps={settings['steps']}"
            note = f"  (unsettled: {res.unsettled})" if res.unsettled else ""
            print(f"{mode:6s} {desc:34s} {seconds:8.1f} {res.value:8.5f}{note}", flush=True)
        (t_ref, v_ref), (t_fast, v_fast) = results["reference"], results["fast"]
        change = (v_fast - v_ref) / v_ref if v_ref else float("nan")
        skip_change = (results["reference+skip"][1] - v_ref) / v_ref if v_ref else float("nan")
        print(f"{mode:6s} skipping defeated images: {t_ref / results['reference+skip'][0]:.2f}× "
              f"faster, ARA change {skip_change:+.3%}")
        print(f"{mode:6s} fast settings: {t_ref / t_fast:.2f}× faster than the reference, "
              f"ARA change {change:+.2%} (limit ±2%)", flush=True)

if __name__ == "__main__":
    main()
