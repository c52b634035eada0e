"""The iterative perturbation routine of method.md §3 (one routine, four uses)."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ._inference import inference_model

Mode = Literal["l2", "l2min", "btr", "encourage"]
MODES: tuple[str, ...] = ("l2", "l2min", "btr", "encourage")
MIN_MODES = ("l2min", "btr")
ProgressFn = Callable[[float], None]


class SanityCheckError(ValueError):
    """The goal was first met too late for the result to be a minimum (method.md §3)."""


@dataclass
class PerturbResult:
    """Output of :func:`perturb`.

    Attributes:
        x_adv: ``x + δ`` (inside ``[0, 1]`` only when ``clip=True``), ``(B, C, H, W)``.
        delta: the perturbation ``x_adv − x``.
        rms: ``rms(δ)`` per sample, ``(B,)``.
        success: the goal was met at least once (min modes: the returned δ meets it, and
            δ = 0 where it was never met; ``l2``/``encourage``: ``rms(δ)`` reached
            ``eps``), ``(B,)`` bool.
        first_goal_step: first pass at which the goal was met, ``steps + 1`` if never.
        sane: passes the sanity check (goal first met within the first half of steps).
    """

    x_adv: torch.Tensor
    delta: torch.Tensor
    rms: torch.Tensor
    success: torch.Tensor
    first_goal_step: torch.Tensor
    sane: torch.Tensor


def rms(v: torch.Tensor) -> torch.Tensor:
    """Root-mean-square over each sample's elements: ``(B, ...) -> (B,)``."""
    return v.flatten(1).pow(2).mean(1).sqrt()


def check_images(x: torch.Tensor, name: str = "images") -> None:
    """``ValueError`` unless ``x`` is a float ``(B, C, H, W)`` batch in ``[0, 1]``."""
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a (B, C, H, W) tensor, got {shape}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be floating point in [0, 1], got {x.dtype}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contain NaN or infinite values")
    if x.numel() and (x.min() < 0 or x.max() > 1):
        raise ValueError(
            f"{name} must lie in [0, 1] (got [{float(x.min()):.3g}, {float(x.max()):.3g}]); "
            "the model normalises internally"
        )


def check_labels(y: torch.Tensor, batch: int, num_classes: int | None = None) -> None:
    """``ValueError`` unless ``y`` is ``(batch,)`` integer class indices in range.

    Reads a CPU copy, so a bad label is refused before it reaches a device kernel (on
    CUDA an out-of-range index is a device assert that poisons the process).
    ``num_classes=None`` checks only the shape, the type and the lower bound.
    """
    if not isinstance(y, torch.Tensor) or y.shape != (batch,):
        shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise ValueError(f"labels must have shape ({batch},), got {shape}")
    if y.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        raise ValueError(f"labels must be integer class indices, got {y.dtype}")
    if not batch:
        return
    values = y.detach().cpu()
    low, high = int(values.min()), int(values.max())
    if low < 0 or (num_classes is not None and high >= num_classes):
        bound = f"0..{num_classes - 1}" if num_classes is not None else "≥ 0"
        raise ValueError(f"label {low if low < 0 else high} is out of range {bound}")


@contextmanager
def frozen(model: nn.Module, train: bool = False) -> Iterator[nn.Module]:
    """Run ``model`` in eval (or train) mode with parameters not requiring grad.

    Restores the train/eval flag and each parameter's ``requires_grad`` afterwards, so
    no gradient ever lands on the model's parameters.
    """
    was_training = model.training
    flags = [p.requires_grad for p in model.parameters()]
    model.train(train)
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        yield model
    finally:
        model.train(was_training)
        for p, flag in zip(model.parameters(), flags, strict=True):
            p.requires_grad_(flag)


def _follow(mode: str, logits: torch.Tensor, y: torch.Tensor, delta_rms: torch.Tensor,
            eps: float) -> torch.Tensor:
    """1 while the routine should keep pushing, 0 once the mode's goal is met."""
    if mode in ("l2", "encourage"):
        return delta_rms < eps
    if mode == "l2min":
        return logits.argmax(1) == y
    probs = logits.softmax(1)
    return probs.gather(1, y[:, None])[:, 0] > 1.0 / logits.shape[1]


def _input_gradient(model: nn.Module, x: torch.Tensor, delta: torch.Tensor, y: torch.Tensor,
                    check: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits on ``x + δ`` (detached) and the gradient of the summed cross-entropy with
    respect to ``δ``; with ``check``, labels are checked against the logits' classes
    before the loss reads them."""
    delta = delta.detach().requires_grad_(True)
    logits = model(x + delta)
    if check:
        check_labels(y, len(y), logits.shape[1])
    loss = F.cross_entropy(logits, y, reduction="sum")
    (grad,) = torch.autograd.grad(loss, delta)
    return logits.detach(), grad


def perturb(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    mode: Mode,
    eps: float,
    steps: int,
    overshoot: float = 1.0,
    momentum: float = 0.0,
    affected: torch.Tensor | None = None,
    clip: bool = False,
    train_mode: bool = False,
    progress: ProgressFn | None = None,
    start: torch.Tensor | None = None,
) -> PerturbResult:
    """Find perturbations ``δ`` for a batch with the routine of method.md §3.

    Args:
        model: maps ``[0, 1]`` images to logits. Its train/eval flag and parameters'
            ``requires_grad`` are restored afterwards; gradients are taken only
            with respect to ``δ``.
        x: ``(B, C, H, W)`` images in ``[0, 1]``.
        y: ``(B,)`` class indices: the true class, or the target for ``encourage``.
        mode: ``"l2"`` (push away from ``y`` until ``rms(δ) ≥ eps``), ``"l2min"``
            (smallest δ that changes the argmax), ``"btr"`` (smallest δ that puts
            ``p_y ≤ 1/C``), ``"encourage"`` (push toward ``y`` until ``rms(δ) ≥ eps``).
        eps: RMS budget ρ (> 0). steps: N (> 0). overshoot: o ≥ 1 (total travel is
            ``eps · o``). momentum: μ in ``[0, 1)``.
        affected: ``(B,)`` 0/1 mask of samples to perturb (half-and-half training).
        clip: keep ``x + δ`` inside ``[0, 1]`` after every step, so the routine optimises
            the image that is shown (off for ARA, as in the reference).
        train_mode: run the model in train mode (adversarial training only).
        progress: called with the fraction done after each pass.
        start: ``(B, C, H, W)`` perturbation to start from, for the min modes only (the
            refinement of the fast ARA); ``None`` starts from δ = 0 as method.md §3.

    Outside ``train_mode`` the routine runs on the network's inference copy
    (:func:`inference_model`: BatchNorm folded, channels-last; the same function up to
    float rounding), and on the CPU in ``l2``/``encourage`` mode each pass leaves out the
    rows whose budget is reached (their step is along ``−δ`` and needs no gradient):
    about 40 % of an explanation's row passes, with identical results.

    Returns:
        :class:`PerturbResult`. For min modes the δ of smallest rms among passes that met
        the goal, and δ = 0 (the unchanged image, as in the reference) when none did:
        ``success`` tells those apart from images that needed no change.
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    if int(steps) != steps or steps <= 0:
        raise ValueError(f"steps must be a positive integer, got {steps}")
    if overshoot < 1:
        raise ValueError(f"overshoot must be ≥ 1, got {overshoot}")
    if not 0 <= momentum < 1:
        raise ValueError(f"momentum must be in [0, 1), got {momentum}")
    check_images(x)
    check_labels(y, x.shape[0])
    if start is not None and (mode not in MIN_MODES or start.shape != x.shape):
        raise ValueError(f"start must be a {tuple(x.shape)} perturbation of a min mode")
    y = y.to(device=x.device, dtype=torch.long)
    batch = x.shape[0]
    shape = (batch,) + (1,) * (x.dim() - 1)
    gate = torch.ones(batch, device=x.device) if affected is None else affected.to(x).reshape(batch)
    gate = gate.view(shape)
    is_min = mode in MIN_MODES
    size = eps * overshoot
    norm = steps * (steps + 1) / 2
    delta = torch.zeros_like(x) if start is None else start.detach().to(x).clone()
    velocity = torch.zeros_like(x)
    best = torch.zeros_like(x)
    best_rms = torch.full((batch,), float("inf"), device=x.device)
    first = torch.full((batch,), steps + 1, dtype=torch.long, device=x.device)
    passes = steps + 1 if is_min else steps
    # In l2/encourage mode the goal depends on rms(δ) alone, so a row whose goal is met
    # steps back along −δ with no network pass; in eval mode every row's gradient is its
    # own, so those rows (and rows left unaffected) can be left out of the pass exactly.
    # On the CPU only: on an accelerator, choosing the rows reads them back to the host
    # every step, and a pass costs about the same for fewer rows.
    skip_met = not is_min and not train_mode and x.device.type == "cpu"
    net = model if train_mode else inference_model(model)
    with frozen(net, train=train_mode), torch.enable_grad():
        for t in range(passes):
            with torch.no_grad():
                d_rms = rms(delta)
            if skip_met and t > 0:
                follow = d_rms < eps
                rows = (follow & (gate.flatten() > 0)).nonzero().flatten()
                grad = torch.zeros_like(x)
                if len(rows):
                    grad[rows] = _input_gradient(net, x[rows], delta[rows], y[rows])[1]
            elif t < steps:
                logits, grad = _input_gradient(net, x, delta, y, check=t == 0)
                follow = _follow(mode, logits, y, d_rms, eps)
            else:
                with torch.no_grad():
                    logits, grad = net(x + delta), None
                follow = _follow(mode, logits, y, d_rms, eps)
            with torch.no_grad():
                met = ~follow
                first = torch.where(met & (first > steps), torch.full_like(first, t), first)
                if is_min:
                    better = met & (d_rms < best_rms)
                    best_rms = torch.where(better, d_rms, best_rms)
                    best = torch.where(better.view(shape), delta, best)
                if grad is not None:
                    if mode == "encourage":
                        grad = -grad
                    step = size * (steps - t) / norm
                    f = follow.to(x.dtype).view(shape)
                    direction = f * grad - (1 - f) * delta
                    direction = direction / (1e-8 + rms(direction).view(shape))
                    if momentum > 0:
                        velocity = momentum * velocity + (1 - momentum) * direction
                        direction = velocity
                    delta = delta + step * direction * gate
                    if clip:
                        delta = (x + delta).clamp(0, 1) - x
            if progress is not None:
                progress((t + 1) / passes)
    with torch.no_grad():
        if is_min:
            success = torch.isfinite(best_rms)
            delta = best
        else:
            success = first <= steps
        x_adv = x + delta
        sane = first <= steps // 2
    return PerturbResult(x_adv.detach(), delta.detach(), rms(delta), success, first, sane)


def enforce_sanity(result: PerturbResult, what: str, strict: bool) -> list[str]:
    """Apply method.md §3's sanity check: raise (``strict``) or return warnings."""
    bad = (~result.sane).nonzero().flatten().tolist()
    if not bad:
        return []
    message = (
        f"{what}: for {len(bad)} of {result.sane.numel()} samples the goal was first met after "
        "the first half of the steps (or never), so the result may not be a minimum; "
        "raise eps or steps"
    )
    if strict:
        raise SanityCheckError(message)
    warnings.warn(message, RuntimeWarning, stacklevel=3)
    return [message]


class MinimalAttack:
    """Smallest perturbation that defeats a classifier (``l2min``) or pushes the true
    class below chance (``btr``); or a bounded ``l2`` attack.

    Example::

        result = MinimalAttack(model, mode="l2min").perturb(x, y)
        result.rms  # size of the smallest perturbation found per image
    """

    def __init__(self, model: nn.Module, mode: Mode = "l2min", eps: float = 20.0,
                 steps: int = 450, momentum: float = 0.9, overshoot: float = 1.0,
                 clip: bool = False) -> None:
        if mode not in ("l2", "l2min", "btr"):
            raise ValueError(f"attack mode must be 'l2', 'l2min' or 'btr', got {mode!r}")
        self.model, self.mode, self.eps, self.steps = model, mode, eps, steps
        self.momentum, self.overshoot, self.clip = momentum, overshoot, clip

    def perturb(self, x: torch.Tensor, y: torch.Tensor, progress: ProgressFn | None = None,
                strict: bool = False) -> PerturbResult:
        """Attack ``x`` (``(B, C, H, W)`` in ``[0, 1]``) with true labels ``y``."""
        result = perturb(self.model, x, y, mode=self.mode, eps=self.eps, steps=self.steps,
                         overshoot=self.overshoot, momentum=self.momentum, clip=self.clip,
                         progress=progress)
        if self.mode in MIN_MODES:
            enforce_sanity(result, f"{self.mode} attack", strict)
        return result
