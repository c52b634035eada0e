"""Robust additions (method.md §5): the input-gradient penalty and adaptive ψ."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class PsiController:
    """Adaptive weight ``ψ = ψ0 · exp(k · I)`` of the gradient penalty.

    After each batch ``I ← max(0, I + clamp(−ln(CE / L_target), down, up))``: while the
    classification loss is under target ψ grows fast, above it ψ decays slowly.
    """

    psi0: float = 220.0
    k: float = 0.02
    target_loss: float = 1.5
    up: float = 1.0
    down: float = -0.01
    integral: float = 0.0

    @property
    def psi(self) -> float:
        return self.psi0 * math.exp(self.k * self.integral)

    def update(self, ce_mean: float) -> None:
        """Advance ``I`` after a batch whose mean cross-entropy was ``ce_mean``."""
        step = -math.log(max(ce_mean, 1e-12) / self.target_loss)
        self.integral = max(0.0, self.integral + min(max(step, self.down), self.up))


def penalty_scalar(logits: torch.Tensor, y: torch.Tensor, zeta: float,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-sample scalar ``s`` of the tandem scheme (ζ = ``zeta``).

    With probability ζ the true-class margin ``logit_y − max_{j≠y} logit_j``; otherwise
    the logit of a class drawn uniformly at random.
    """
    batch, classes = logits.shape
    device = logits.device
    use_margin = torch.rand(batch, generator=generator).to(device) < zeta
    random_class = torch.randint(classes, (batch,), generator=generator).to(device)
    true_logit = logits.gather(1, y[:, None])[:, 0]
    others = logits.masked_fill(F.one_hot(y, classes).bool(), float("-inf"))
    margin = true_logit - others.max(1).values
    random_logit = logits.gather(1, random_class[:, None])[:, 0]
    return torch.where(use_margin, margin, random_logit)


def robust_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, psi: float,
                zeta: float = 0.2, z: float = 2.0,
                generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``mean(CE) + ψ · mean(|∂s/∂x|^z)`` with double backpropagation.

    Returns ``(total, ce_mean, penalty, logits)``; ``total`` is ready for ``backward()``,
    the others are detached.
    """
    x = x.detach().requires_grad_(True)
    logits = model(x)
    ce = F.cross_entropy(logits, y)
    s = penalty_scalar(logits, y, zeta, generator)
    (grad,) = torch.autograd.grad(s.sum(), x, create_graph=True)
    penalty = grad.square().mean() if z == 2 else grad.abs().pow(z).mean()
    return ce + psi * penalty, ce.detach(), penalty.detach(), logits.detach()
