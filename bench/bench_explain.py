"""Adversarial-explanation time: 1 image × 12 targets × 35 steps on a robust network.

    python bench/bench_explain.py [--model ref-robust] [--repeats 3] [--threads N]

The 12 targets are those the reference produces for one image: the true class, the most
confident wrong class, and each of the 10 classes; they run as one batch. Also times the
same batch through the API the service uses (``AdversarialExplainer``, all 10 classes).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from _timing import interleaved
from bench_ara import cifar_test_dir

from aex.models import (
    AdversarialExplainer,
    ModelStore,
    evaluation_indices,
    load_checkpoint,
    load_image_folder,
    perturb,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ref-robust")
    parser.add_argument("--model-dir", type=Path)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    store = ModelStore(args.model_dir) if args.model_dir else ModelStore()
    loaded = load_checkpoint(args.model, store=store)
    data = load_image_folder(cifar_test_dir(), loaded.input_size[0])
    i = int(evaluation_indices(len(data), 1)[0])
    x, label = data.floats(slice(i, i + 1)), int(data.labels[i])
    with torch.no_grad():
        probs = loaded.model(x).softmax(1)[0]
    wrong = [int(k) for k in probs.argsort(descending=True) if int(k) != label][0]
    targets = torch.tensor([label, wrong, *range(len(loaded.classes))])
    batch = x.expand(len(targets), -1, -1, -1).contiguous()
    explainer = AdversarialExplainer(loaded.model, loaded.classes)
    times = interleaved({
        "routine, 12 targets": lambda: perturb(loaded.model, batch, targets, mode="encourage",
                                               eps=0.1, steps=35, overshoot=5.0),
        "explain(), 10 targets": lambda: explainer.explain(x, targets="all"),
    }, repeats=args.repeats)
    print(f"{loaded.name}, {torch.get_num_threads()} threads, 35 steps, rho 0.1, overshoot 5")
    for name, seconds in times.items():
        print(f"  {name:22s} {seconds:6.2f} s")


if __name__ == "__main__":
    main()
