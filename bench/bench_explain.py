"""Adversarial-explanation time, 1 image × 12 targets × 35 steps, against the paper's loop.

    python bench/bench_explain.py [--model ref-robust] [--repeats 3] [--threads N] [--compile]

The 12 targets are those the reference produces for one image: the true class, the most
confident wrong class, and each of the 10 classes, as one batch. Timed side by side in
one run, interleaved: the paper's loop (``_paper.py``: method.md §3 written out, on the
network as loaded), our routine on the network as it is loaded (rows whose budget is
reached leave the pass, but no inference copy), our routine as it runs (on the inference
copy: BatchNorm folded, fused activations, channels-last), and ``explain()`` with all 10
classes. With ``--compile`` also the inference copy through ``torch.compile`` (compiling
takes minutes). Efficiency is against the float32 matrix-multiply peak timed among the
same runs, with the FLOPs of the convolutions of the row passes each run makes: a forward
pass plus the input gradient (2 × forward) per row and pass.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import torch
from _machine import MatmulPeak, describe, efficiency, forward_flops
from _paper import paper_explanations
from _timing import interleaved
from bench_ara import cifar_test_dir

from aex.models import (
    AdversarialExplainer,
    ModelStore,
    evaluation_indices,
    inference_model,
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
    parser.add_argument("--compile", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    store = ModelStore(args.model_dir) if args.model_dir else ModelStore()
    loaded = load_checkpoint(args.model, store=store)
    model = loaded.model.eval()
    data = load_image_folder(cifar_test_dir(), loaded.input_size[0])
    i = int(evaluation_indices(len(data), 1)[0])
    x, label = data.floats(slice(i, i + 1)), int(data.labels[i])
    with torch.no_grad():
        probs = model(x).softmax(1)[0]
    wrong = [int(k) for k in probs.argsort(descending=True) if int(k) != label][0]
    targets = torch.tensor([label, wrong, *range(len(loaded.classes))])
    batch = x.expand(len(targets), -1, -1, -1).contiguous()
    explainer = AdversarialExplainer(model, loaded.classes)

    def routine(net: torch.nn.Module) -> Callable[[], object]:
        return lambda: perturb(net, batch, targets, mode="encourage", eps=0.1, steps=35,
                               overshoot=5.0)

    runs: dict[str, Callable[[], object]] = {
        "paper loop": lambda: paper_explanations(model, x, targets),
        # Wrapped, the network is not a PreActResNet: no inference copy, rows still skipped.
        "routine, network as is": routine(torch.nn.Sequential(model)),
        "routine": routine(model),
        "explain(), 10 targets": lambda: explainer.explain(x, targets="all"),
    }
    if args.compile:
        runs["routine, compiled copy"] = routine(inference_model(model, compile=True))
    matmul = MatmulPeak()
    times = interleaved({**runs, "matmul": matmul}, repeats=args.repeats)
    peak = matmul.gflops(times.pop("matmul"))
    per_pass = 2 * forward_flops(model, x)
    done = _row_passes(inference_model(model), batch, targets)
    print(f"{loaded.name}, {torch.get_num_threads()} threads, 35 steps, rho 0.1, overshoot 5")
    print(f"{describe(peak)}; assumed: {per_pass / 1e9:.4f} GFLOP per row and pass (forward + "
          f"input gradient); the paper's loop runs 12 × 35 = 420 row passes "
          f"({420 * per_pass / 1e9:.2f} GFLOP), the routine {done} (rows whose budget is "
          f"reached skip the pass)")
    base, before = times["paper loop"], times["routine, network as is"]
    for name, seconds in times.items():
        rows = 10 if name.startswith("explain") else 12
        work = 35 * rows if name == "paper loop" else round(done * rows / 12)
        print(f"  {name:26s} {seconds:6.2f} s  {base / seconds:5.2f}× paper loop  "
              f"{before / seconds:5.2f}× as is  {efficiency(work * per_pass, seconds, peak)}")
    print(f"the paper's loop at peak: {420 * per_pass / peak / 1e9:.2f} s for 12 rows")


def _row_passes(net: torch.nn.Module, batch: torch.Tensor, targets: torch.Tensor) -> int:
    """Rows the routine runs through the network for one explanation of ``batch``."""
    rows = 0

    def count(_module: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        nonlocal rows
        rows += inputs[0].shape[0]

    hook = net.register_forward_pre_hook(count)
    try:
        perturb(net, batch, targets, mode="encourage", eps=0.1, steps=35, overshoot=5.0)
    finally:
        hook.remove()
    return rows


if __name__ == "__main__":
    main()
