"""Training throughput (images/s) of standard and robust steps, ResNet-44, against the
paper's steps timed in the same run.

    python bench/bench_train.py [--batch 128] [--repeats 3] [--threads N]

Each aex step is what ``aex train`` runs per batch (augmentation, forward, loss, backward,
SGD update; the robust step adds the input-gradient penalty with double backpropagation).
The baselines are the same steps written out from method.md (``_paper.py``: per-image
augmentation, the same layers with PyTorch's own derivatives). Efficiency is against the
float32 matrix-multiply peak timed among the same runs, with the FLOPs of the
convolutions: a standard step is assumed to cost 3 forward passes (forward, input and
weight gradients), a robust step 6 (forward, input gradient, and the backward of both).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from collections.abc import Callable

import torch
from _machine import MatmulPeak, describe, efficiency, forward_flops
from _paper import paper_network, paper_robust_step, paper_standard_step
from _timing import interleaved

from aex.models import ImageSet, create_model
from aex.models.training import TrainConfig, Trainer

FORWARD_PASSES = {"standard": 3, "robust": 6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    images = (torch.rand(args.batch, 3, 32, 32, generator=gen) * 255).byte()
    data = ImageSet(images, torch.arange(args.batch) % 10, [str(i) for i in range(10)])
    x, y = data.floats(), data.labels
    tmp = tempfile.mkdtemp()
    common = {"arch": "resnet44", "epochs": 1, "batch_size": args.batch,
              "mean": [0.49, 0.48, 0.45], "std": [0.25, 0.24, 0.26]}
    runs: dict[str, Callable[[], object]] = {}
    psi = 220.0
    try:
        for kind in ("standard", "robust"):
            trainer = Trainer(TrainConfig(**common, robust=kind == "robust"), data,
                              f"{tmp}/{kind}", device="cpu", show_progress=False)
            psi = trainer.psi.psi
            net = paper_network(create_model("resnet44",
                                             act="hhrelu" if kind == "robust" else "relu"))
            opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
            if kind == "robust":
                runs["robust: paper"] = (lambda n=net, o=opt, p=psi:
                                         paper_robust_step(n, o, x, y, p))
            else:
                runs["standard: paper"] = lambda n=net, o=opt: paper_standard_step(n, o, x, y)
            runs[f"{kind}: aex"] = lambda t=trainer: t._step(x, y, gen)
        matmul = MatmulPeak()
        seconds = interleaved({**runs, "matmul": matmul}, repeats=args.repeats)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    peak = matmul.gflops(seconds.pop("matmul"))
    forward = forward_flops(create_model("resnet44"), x)
    print(f"ResNet-44 training steps, batch {args.batch}, {torch.get_num_threads()} threads")
    print(f"{describe(peak)}; assumed: forward {forward / 1e9:.1f} GFLOP per batch, "
          f"standard step 3×, robust step 6×")
    for name, s in seconds.items():
        kind, who = name.split(": ")
        flops = FORWARD_PASSES[kind] * forward
        vs = f"{seconds[f'{kind}: paper'] / s:5.2f}× paper" if who == "aex" else " " * 11
        print(f"  {name:16s} {args.batch / s:7.1f} images/s  {vs}  {efficiency(flops, s, peak)}")
    print(f"robust step cost relative to standard (aex): "
          f"{seconds['robust: aex'] / seconds['standard: aex']:.2f}×")


if __name__ == "__main__":
    main()
