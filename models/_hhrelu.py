"""Half-Huber ReLU (method.md §2)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class _HHReLUFunction(torch.autograd.Function):
    """Forward in three fused-style passes; backward written with differentiable ops.

    The backward ``grad · clamp(x, 0, d) / d`` is itself built from autograd
    primitives, so double backpropagation (the robust loss) differentiates it: the
    second derivative is ``1/d`` on ``(0, d)`` and 0 elsewhere.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, d: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.d = d
        c = x.clamp(0.0, d)
        out = torch.sub(x, c, alpha=0.5)
        return out.mul_(c).mul_(1.0 / d)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (x,) = ctx.saved_tensors
        return grad * x.clamp(0.0, ctx.d) * (1.0 / ctx.d), None


def hhrelu(x: torch.Tensor, d: float = 0.5) -> torch.Tensor:
    """Half-Huber ReLU: 0 for x ≤ 0, x²/(2d) on (0, d], x − d/2 above d.

    Computed as ``c · (x − c/2) / d`` with ``c = clamp(x, 0, d)``, which equals the
    piecewise definition everywhere. First derivative ``clamp(x, 0, d) / d``; the
    second derivative works (double backpropagation).
    """
    return _HHReLUFunction.apply(x, d)


class HalfHuberReLU(nn.Module):
    """Half-Huber ReLU module; ``d`` is kept as a buffer (as in the reference checkpoints).

    Args:
        d: width of the quadratic region, default 0.5.
        inplace: overwrite the input when autograd does not need it (inference), as
            ``nn.ReLU(inplace=True)`` does; with gradients it always works out of place.

    Attributes:
        fuse_with_batchnorm: whether a preceding train-mode BatchNorm and this activation
            may run as one node (``batchnorm_activation``); the same values either way.
    """

    d: torch.Tensor
    fuse_with_batchnorm = True

    def __init__(self, d: float = 0.5, inplace: bool = False) -> None:
        super().__init__()
        if d <= 0:
            raise ValueError(f"HalfHuberReLU needs d > 0, got {d}")
        self.register_buffer("d", torch.tensor(float(d)))
        self._d = float(d)
        self.inplace = inplace

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str,
                              *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._d = float(self.d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.inplace and not (torch.is_grad_enabled() and x.requires_grad):
            c = x.clamp(0.0, self._d)
            return x.sub_(c, alpha=0.5).mul_(c).mul_(1.0 / self._d)
        return hhrelu(x, self._d)

    def extra_repr(self) -> str:
        return f"d={self._d}, inplace={self.inplace}"


def make_activation(name: str, inplace: bool = False) -> nn.Module:
    """Return a fresh activation module by name: ``"relu"`` or ``"hhrelu"``."""
    if name == "relu":
        return nn.ReLU(inplace=inplace)
    if name == "hhrelu":
        return HalfHuberReLU(inplace=inplace)
    raise ValueError(f"unknown activation {name!r}; use 'relu' or 'hhrelu'")
