"""Half-Huber ReLU (method.md §2)."""

from __future__ import annotations

import torch
from torch import nn


def hhrelu(x: torch.Tensor, d: float = 0.5) -> torch.Tensor:
    """Half-Huber ReLU: 0 for x ≤ 0, x²/(2d) on (0, d], x − d/2 above d.

    Written as ``c · (x − c/2) / d`` with ``c = clamp(x, 0, d)``, which equals the
    piecewise definition everywhere. Built from differentiable primitives, so
    autograd gives the first derivative ``clamp(x, 0, d) / d`` and a working second
    derivative (``1/d`` on ``(0, d)``, 0 elsewhere) for double backpropagation.
    """
    c = x.clamp(0.0, d)
    return c * (x - 0.5 * c) * (1.0 / d)


class HalfHuberReLU(nn.Module):
    """Half-Huber ReLU module; ``d`` is kept as a buffer (as in the reference checkpoints).

    Args:
        d: width of the quadratic region, default 0.5.
    """

    d: torch.Tensor

    def __init__(self, d: float = 0.5) -> None:
        super().__init__()
        if d <= 0:
            raise ValueError(f"HalfHuberReLU needs d > 0, got {d}")
        self.register_buffer("d", torch.tensor(float(d)))
        self._d = float(d)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[no-untyped-def]
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._d = float(self.d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return hhrelu(x, self._d)

    def extra_repr(self) -> str:
        return f"d={self._d}"


def make_activation(name: str) -> nn.Module:
    """Return a fresh activation module by name: ``"relu"`` or ``"hhrelu"``."""
    if name == "relu":
        return nn.ReLU()
    if name == "hhrelu":
        return HalfHuberReLU()
    raise ValueError(f"unknown activation {name!r}; use 'relu' or 'hhrelu'")
