"""Training throughput (images/s) of standard, adversarial and robust steps, ResNet-44.

    python bench/bench_train.py [--batch 128] [--repeats 3] [--threads N]

Each step is what ``aex train`` runs per batch (augmentation, attack for adversarial
training, forward, loss, backward, SGD update). The robust step is also timed with the
reference implementation's style of HHReLU (a masked piecewise forward and a custom
backward that autograd differentiates), to show what the activation costs there.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile

import torch
from _timing import interleaved
from bench_hhrelu import PiecewiseHHReLU

from aex.models import HalfHuberReLU, ImageSet
from aex.models.training import TrainConfig, Trainer

# The reference implementation on this 2-core machine (issue 4): images/s.
REFERENCE_IMAGES_PER_S = {"standard": 105.0, "robust": 35.0}


def _swap_to_piecewise(module: torch.nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, HalfHuberReLU):
            setattr(module, name, PiecewiseHHReLU())
        else:
            _swap_to_piecewise(child)


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
    tmp = tempfile.mkdtemp()
    common = {"arch": "resnet44", "epochs": 1, "batch_size": args.batch,
              "mean": [0.49, 0.48, 0.45], "std": [0.25, 0.24, 0.26]}
    setups = {
        "standard": TrainConfig(**common),
        "adversarial l2": TrainConfig(**common, adversarial="l2"),
        "robust": TrainConfig(**common, robust=True),
        "robust, piecewise HHReLU": TrainConfig(**common, robust=True),
    }
    steps = {}
    try:
        for i, (name, cfg) in enumerate(setups.items()):
            trainer = Trainer(cfg, data, f"{tmp}/{i}", device="cpu", show_progress=False)
            if "piecewise" in name:
                _swap_to_piecewise(trainer.model)
            x, y = data.floats(), data.labels
            steps[name] = (lambda t=trainer, x=x, y=y: t._step(x, y, gen))
        seconds = interleaved(steps, repeats=args.repeats)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"ResNet-44 training steps, batch {args.batch}, {torch.get_num_threads()} threads")
    rate = {name: args.batch / s for name, s in seconds.items()}
    for name, r in rate.items():
        ref = REFERENCE_IMAGES_PER_S.get(name)
        vs = f"   reference implementation {ref:.0f}/s → {r / ref:.2f}×" if ref else ""
        print(f"  {name:26s} {r:7.1f} images/s{vs}")
    print(f"robust step cost relative to standard: {seconds['robust'] / seconds['standard']:.2f}×")
    print(f"robust step speed-up from our HHReLU over the piecewise one: "
          f"{seconds['robust, piecewise HHReLU'] / seconds['robust']:.2f}×")


if __name__ == "__main__":
    main()
