"""The paper's algorithms written out plainly from method.md, as the baselines the
benchmarks time in the same run: the network as it is loaded (aex's own layers, so the
baseline is not slowed by a slower activation, but differentiated by PyTorch's own
derivatives as the reference's layers are: see :func:`paper_network`), no inference copy, no
skipping, one batch per image, per-image augmentation. Each is timed, never trusted for
results.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from aex.models import use_explicit_derivatives


def paper_network(model: nn.Module) -> nn.Module:
    """``model`` differentiated as the reference's layers are, by PyTorch's own derivatives
    (no fused train-mode BatchNorm + HHReLU node, no written-out convolution double
    backward). Returns ``model``."""
    return use_explicit_derivatives(model, False)


def _rms(v: torch.Tensor) -> torch.Tensor:
    return v.flatten(1).pow(2).mean(1).sqrt()


def paper_routine(model: nn.Module, x: torch.Tensor, y: torch.Tensor, mode: str, eps: float,
                  steps: int, overshoot: float = 1.0, momentum: float = 0.0) -> torch.Tensor:
    """method.md §3 as written, model in eval mode; returns δ (min modes: the smallest
    that met the goal). One extra evaluation pass at t = N for the min modes."""
    model.eval()
    shape = (-1,) + (1,) * (x.dim() - 1)
    delta = torch.zeros_like(x)
    velocity = torch.zeros_like(x)
    best = torch.zeros_like(x)
    best_rms = torch.full((x.shape[0],), float("inf"), device=x.device)
    size = eps * overshoot
    is_min = mode in ("l2min", "btr")
    for t in range(steps + 1 if is_min else steps):
        delta.requires_grad_(True)
        logits = model(x + delta)
        loss = F.cross_entropy(logits, y, reduction="sum")
        grad = torch.autograd.grad(loss, delta)[0]
        delta = delta.detach()
        with torch.no_grad():
            if mode == "l2min":
                follow = logits.argmax(1) == y
            elif mode == "btr":
                follow = logits.softmax(1).gather(1, y[:, None])[:, 0] > 1 / logits.shape[1]
            else:
                follow = _rms(delta) < eps
            if is_min:
                better = ~follow & (_rms(delta) < best_rms)
                best_rms = torch.where(better, _rms(delta), best_rms)
                best = torch.where(better.view(shape), delta, best)
                if t == steps:
                    break
            if mode == "encourage":
                grad = -grad
            f = follow.float().view(shape)
            direction = f * grad + (1 - f) * (-delta)
            direction = direction / (1e-8 + _rms(direction).view(shape))
            if momentum > 0:
                velocity = momentum * velocity + (1 - momentum) * direction
                direction = velocity
            delta = delta + size * (steps - t) / (steps * (steps + 1) / 2) * direction
    return torch.where(torch.isfinite(best_rms).view(shape), best, delta) if is_min else delta


def paper_explanations(model: nn.Module, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """method.md §4 for one image ``(1, C, H, W)``: all targets as one batch."""
    batch = x.expand(len(targets), -1, -1, -1)
    return batch + paper_routine(model, batch, targets, "encourage", 0.1, 35, 5.0)


def paper_augment(x: torch.Tensor) -> torch.Tensor:
    """Replicate-pad 4, random 32×32 crop and horizontal flip, one image at a time."""
    padded = F.pad(x, (4, 4, 4, 4), mode="replicate")
    out = torch.empty_like(x)
    for i in range(x.shape[0]):
        dy, dx = (int(v) for v in torch.randint(0, 9, (2,)))
        img = padded[i, :, dy:dy + x.shape[2], dx:dx + x.shape[3]]
        out[i] = img.flip(2) if torch.rand(()) < 0.5 else img
    return out


def paper_standard_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor,
                        y: torch.Tensor) -> float:
    """One standard training step (method.md §6's schedule): augment, cross-entropy,
    backward, SGD update. Returns the loss."""
    model.train()
    loss = F.cross_entropy(model(paper_augment(x)), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def paper_robust_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor,
                      y: torch.Tensor, psi: float, zeta: float = 0.2) -> float:
    """One robust training step of method.md §5 (double backpropagation), model in train
    mode: augment, loss, backward, SGD update. Returns the loss."""
    model.train()
    x = paper_augment(x).requires_grad_(True)
    logits = model(x)
    ce = F.cross_entropy(logits, y)
    classes = logits.shape[1]
    margin_rows = torch.rand(len(y), device=y.device) < zeta
    others = logits.masked_fill(F.one_hot(y, classes).bool(), float("-inf")).max(1).values
    margin = logits.gather(1, y[:, None])[:, 0] - others
    random_logit = logits.gather(1, torch.randint(classes, (len(y), 1), device=y.device))[:, 0]
    s = torch.where(margin_rows, margin, random_logit)
    (grad,) = torch.autograd.grad(s.sum(), x, create_graph=True)
    loss = ce + psi * grad.pow(2).mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return float(loss.detach())
