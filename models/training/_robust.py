"""Robust additions (method.md §5): the input-gradient penalty and adaptive ψ."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

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


@dataclass(frozen=True)
class TandemChoices:
    """The random choices of one penalty evaluation (method.md §5), one per sample.

    Attributes:
        smooth_class: ``(B,)`` the class whose logit is smoothed where not in tandem.
        tandem: ``(B,)`` bool, True where the sample uses the true-class margin.
    """

    smooth_class: torch.Tensor
    tandem: torch.Tensor

    @classmethod
    def draw(cls, batch: int, classes: int, zeta: float,
             generator: torch.Generator | None = None) -> TandemChoices:
        """Draw the choices: tandem with probability ζ, a uniformly random class."""
        tandem = torch.rand(batch, generator=generator) < zeta
        smooth_class = torch.randint(classes, (batch,), generator=generator)
        return cls(smooth_class, tandem)


class RobustLoss(NamedTuple):
    """One evaluation of :func:`robust_loss`; all but ``total`` are detached."""

    total: torch.Tensor
    ce: torch.Tensor
    penalty: torch.Tensor
    logits: torch.Tensor
    input_grads: torch.Tensor


def penalty_scalar(logits: torch.Tensor, y: torch.Tensor, zeta: float,
                   generator: torch.Generator | None = None,
                   choices: TandemChoices | None = None) -> torch.Tensor:
    """Per-sample scalar ``s`` of the tandem scheme (ζ = ``zeta``).

    With probability ζ the true-class margin ``logit_y − max_{j≠y} logit_j``; otherwise
    the logit of a class drawn uniformly at random. ``choices`` replaces the draws
    (to reproduce a recorded evaluation); otherwise they come from ``generator``.
    """
    batch, classes = logits.shape
    device = logits.device
    if choices is None:
        choices = TandemChoices.draw(batch, classes, zeta, generator)
    if choices.smooth_class.shape != (batch,) or choices.tandem.shape != (batch,):
        raise ValueError(f"tandem choices must have shape ({batch},)")
    use_margin = choices.tandem.to(device=device, dtype=torch.bool)
    random_class = choices.smooth_class.to(device=device, dtype=torch.long)
    true_logit = logits.gather(1, y[:, None])[:, 0]
    others = logits.masked_fill(F.one_hot(y, classes).bool(), float("-inf"))
    margin = true_logit - others.max(1).values
    random_logit = logits.gather(1, random_class[:, None])[:, 0]
    return torch.where(use_margin, margin, random_logit)


def robust_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, psi: float,
                zeta: float = 0.2, z: float = 2.0,
                generator: torch.Generator | None = None,
                choices: TandemChoices | None = None) -> RobustLoss:
    """``mean(CE) + ψ · mean(|∂s/∂x|^z)`` with double backpropagation.

    ``choices`` fixes the tandem draws (see :func:`penalty_scalar`). ``total`` is ready
    for ``backward()``; ``input_grads`` is ``∂s/∂x`` summed over the batch's scalars.
    """
    x = x.detach().requires_grad_(True)
    logits = model(x)
    ce = F.cross_entropy(logits, y)
    s = penalty_scalar(logits, y, zeta, generator, choices)
    (grad,) = torch.autograd.grad(s.sum(), x, create_graph=True)
    penalty = grad.square().mean() if z == 2 else grad.abs().pow(z).mean()
    return RobustLoss(ce + psi * penalty, ce.detach(), penalty.detach(), logits.detach(),
                      grad.detach())
