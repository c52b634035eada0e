"""HHReLU ResNet-44 inference time over ReLU ResNet-44 on the same batch (target ≤ 1.05×).

    python bench/bench_hhrelu.py [--batch 128] [--repeats 7] [--threads N]

Also times a reference-style HHReLU (a custom autograd function computing the piecewise
formula with masks) for comparison.
"""

from __future__ import annotations

import argparse

import torch
from _timing import interleaved
from torch import nn

from aex.models import HalfHuberReLU, create_model


class _PiecewiseHHReLU(torch.autograd.Function):
    """The reference implementation's style: masks in forward, a custom backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        d = 0.5
        quad = (x > 0) & (x <= d)
        return torch.where(x > d, x - d / 2, torch.where(quad, x * x / (2 * d), 0.0))

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad * x.clamp(0, 0.5) / 0.5


class PiecewiseHHReLU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _PiecewiseHHReLU.apply(x)


def _swap(model: nn.Module) -> nn.Module:
    for name, child in model.named_children():
        if isinstance(child, HalfHuberReLU):
            setattr(model, name, PiecewiseHHReLU())
        else:
            _swap(child)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    relu = create_model("resnet44", act="relu").eval()
    hh = create_model("resnet44", act="hhrelu").eval()
    hh.load_state_dict(relu.state_dict(), strict=False)
    ref_style = _swap(create_model("resnet44", act="hhrelu")).eval()
    ref_style.load_state_dict(relu.state_dict(), strict=False)
    x = torch.rand(args.batch, 3, 32, 32)

    def run(model: nn.Module) -> None:
        with torch.no_grad():
            model(x)

    t = interleaved({"relu": lambda: run(relu), "hhrelu": lambda: run(hh),
                     "reference-style": lambda: run(ref_style)}, repeats=args.repeats)
    print(f"ResNet-44 inference, batch {args.batch}, {torch.get_num_threads()} threads")
    for name, sec in t.items():
        print(f"  {name:16s} {sec * 1000:8.1f} ms   {sec / t['relu']:.3f}× relu")
    print(f"HHReLU / ReLU ratio: {t['hhrelu'] / t['relu']:.3f} (target ≤ 1.05)")


if __name__ == "__main__":
    main()
