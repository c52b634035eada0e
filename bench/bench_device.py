"""The service's four throughputs on whatever device is present (a GPU when there is one).

    python bench/bench_device.py [--model ref-robust] [--device cuda|cpu] [--jobs 16]
                                 [--ara-images 100] [--batch 128] [--compile] [--threads N]

Prints, each beside the paper's loop timed in the same run on the same device: the latency
of one explanation (1 image, all 10 classes, 35 steps), explanations per second with
``--jobs`` images explained at once (the rows of concurrent jobs for one model batched
into one pass), ARA images per second (attack ARA, fast settings, against the paper's
algorithm at the reference settings on a quarter of the images), and robust training
images per second (aex's step against the paper's step). Labels every figure with the
device's name.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from _machine import MatmulPeak, describe
from _paper import paper_explanations, paper_network, paper_robust_step, paper_routine
from bench_ara import cifar_test_dir

from aex.models import (
    FAST_SETTINGS,
    REFERENCE_SETTINGS,
    AdversarialExplainer,
    ImageSet,
    ModelStore,
    ara,
    create_model,
    evaluation_indices,
    inference_model,
    load_checkpoint,
    load_image_folder,
)
from aex.models.training import TrainConfig, Trainer


def _timed(fn: Callable[[], object], device: torch.device, repeats: int = 1) -> float:
    """Median seconds of ``fn`` after one warm-up call, synchronising the device."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ref-robust")
    parser.add_argument("--model-dir", type=Path)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--jobs", type=int, default=16)
    parser.add_argument("--ara-images", type=int, default=100)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--threads", type=int)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    store = ModelStore(args.model_dir) if args.model_dir else ModelStore()
    loaded = load_checkpoint(args.model, store=store, device=device)
    model = loaded.model.eval()
    data = load_image_folder(cifar_test_dir(), loaded.input_size[0])
    idx = evaluation_indices(len(data), max(args.jobs, args.ara_images))
    images, labels = data.floats(idx).to(device), data.labels[idx].to(device)
    matmul = MatmulPeak(size=4096 if device.type == "cuda" else 1024, device=args.device)
    peak = matmul.gflops(_timed(matmul, device, args.repeats))
    print(f"{loaded.name} on {name} ({device}); {describe(peak, 'best of the calls')}")
    explainer = AdversarialExplainer(inference_model(model, compile=True) if args.compile
                                     else model, loaded.classes)
    x1, every = images[:1], torch.arange(len(loaded.classes), device=device)
    jobs = images[:args.jobs]

    def row(what: str, ours: float, paper: float, unit: str) -> None:
        print(f"  {what:44s} {ours:9.2f} {unit:14s} paper's {paper:9.2f}  {ours / paper:5.2f}×")

    one = _timed(lambda: explainer.explain(x1, targets="all"), device, args.repeats)
    one_paper = _timed(lambda: paper_explanations(model, x1, every), device, args.repeats)
    print(f"  explanation latency (1 image, 10 targets)    {one:9.2f} s              "
          f"paper's {one_paper:9.2f}  {one_paper / one:5.2f}×")
    many = _timed(lambda: explainer.explain(jobs, targets="all"), device, args.repeats)
    row(f"explanations per second, {args.jobs} jobs at once", len(jobs) / many,
        1 / one_paper, "explanations/s")
    x, y = images[:args.ara_images], labels[:args.ara_images]
    fast = _timed(lambda: ara(model, x, y, mode="l2min", strict=False, **FAST_SETTINGS), device)
    quarter = max(1, args.ara_images // 4)
    ref = REFERENCE_SETTINGS
    paper = _timed(lambda: paper_routine(model, x[:quarter], y[:quarter], "l2min", ref["eps"],
                                         ref["steps"], ref["overshoot"], ref["momentum"]),
                   device)
    row("attack ARA images per second (fast settings)", len(y) / fast, quarter / paper,
        "images/s")
    tmp = tempfile.mkdtemp()
    try:
        gen = torch.Generator().manual_seed(0)
        train = ImageSet((torch.rand(args.batch, 3, 32, 32, generator=gen) * 255).byte(),
                         torch.arange(args.batch) % 10, [str(i) for i in range(10)])
        config = TrainConfig(arch="resnet44", epochs=1, batch_size=args.batch, robust=True,
                             mean=[0.49, 0.48, 0.45], std=[0.25, 0.24, 0.26])
        trainer = Trainer(config, train, tmp, device=str(device), show_progress=False)
        tx, ty = train.floats().to(device), train.labels.to(device)
        ours = _timed(lambda: trainer._step(tx, ty, gen), device, args.repeats)
        net = paper_network(create_model("resnet44", act="hhrelu")).to(device)
        opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
        base = _timed(lambda: paper_robust_step(net, opt, tx, ty, trainer.psi.psi), device,
                      args.repeats)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    row(f"robust training images per second (batch {args.batch})", args.batch / ours,
        args.batch / base, "images/s")


if __name__ == "__main__":
    main()
