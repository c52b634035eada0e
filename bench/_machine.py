"""What a benchmark compares against on the machine it runs on: the float32
matrix-multiply peak (measured here, now) and the FLOP count a network's pass assumes."""

from __future__ import annotations

import torch
from torch import nn


class MatmulPeak:
    """Float32 matrix-multiply work to time among a benchmark's runs (so that it meets the
    same load): ``repeats`` products of ``size × size`` matrices per call.

    Example::

        peak = MatmulPeak()
        times = interleaved({"matmul": peak, ...})
        gflops = peak.gflops(times["matmul"])
    """

    def __init__(self, size: int = 1024, repeats: int = 8, device: str = "cpu") -> None:
        self.a = torch.randn(size, size, device=device)
        self.b = torch.randn(size, size, device=device)
        self.size, self.repeats, self.device = size, repeats, device

    def __call__(self) -> None:
        for _ in range(self.repeats):
            self.a @ self.b
        if self.device != "cpu":
            torch.cuda.synchronize()

    def gflops(self, seconds: float) -> float:
        """GFLOP/s of one call that took ``seconds``."""
        return 2 * self.size ** 3 * self.repeats / seconds / 1e9


def forward_flops(model: nn.Module, x: torch.Tensor) -> int:
    """FLOPs of one forward pass on ``x``: 2 per multiply-add of every convolution and
    linear layer (element-wise work is not counted)."""
    total = 0

    def count(module: nn.Module, _inputs: object, out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            total += 2 * out.numel() * module.in_channels // module.groups * k
        elif isinstance(module, nn.Linear):
            total += 2 * out.numel() * module.in_features

    hooks = [m.register_forward_hook(count) for m in model.modules()]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return total


def efficiency(flops: float, seconds: float, peak: float) -> str:
    """``"12.3 GFLOP/s, 45 % of peak"`` for ``flops`` done in ``seconds``."""
    rate = flops / seconds / 1e9
    return f"{rate:6.1f} GFLOP/s {100 * rate / peak:4.0f} % of peak"


def describe(peak: float, how: str = "median among the runs") -> str:
    """One line naming the machine's peak as measured, for the head of a report."""
    return (f"float32 matrix-multiply peak {peak:.1f} GFLOP/s "
            f"({torch.get_num_threads()} threads, {how})")
