"""Why attacks invalidate earlier explanations (method.md §8): Grad-CAM before and after a
minimal attack, side by side."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ._classic import ClassicExplainer
from ._perturb import ProgressFn, check_images, frozen, perturb

ATTACK_EPS = 20.0
ATTACK_STEPS = 450
ATTACK_DEFAULTS: dict[str, dict[str, float]] = {
    # The minimal modes search up to the ARA bound (method.md §7).
    "l2min": {"eps": ATTACK_EPS, "steps": ATTACK_STEPS, "momentum": 0.9},
    "btr": {"eps": ATTACK_EPS, "steps": ATTACK_STEPS, "momentum": 0.9},
    # A bounded attack spends its whole budget: the paper's adversarial-training one
    # (method.md §6), never the minimal modes' search bound of 20.
    "l2": {"eps": 0.01, "steps": 7, "momentum": 0.0},
}
"""Per-mode defaults of :func:`attack_comparison` (``eps``, ``steps``, ``momentum``)."""

@dataclass
class AttackComparison:
    """One image before and after an attack, with Grad-CAM maps of the predicted class.

    ``similarity`` is the Pearson correlation of the two Grad-CAM maps: near 1 means the
    heat map barely moved although the prediction changed.
    """

    x_adv: torch.Tensor
    delta: torch.Tensor
    perturbation_rms: float
    probs_before: torch.Tensor
    probs_after: torch.Tensor
    pred_before: int
    pred_after: int
    success: bool
    gradcam_before: torch.Tensor
    gradcam_after: torch.Tensor
    similarity: float
    warnings: list[str]


def map_similarity(a: torch.Tensor, b: torch.Tensor) -> float:
    """Pearson correlation of two maps (1 when one is constant and the maps are equal)."""
    a, b = a.flatten().double(), b.flatten().double()
    a, b = a - a.mean(), b - b.mean()
    denom = a.norm() * b.norm()
    if float(denom) < 1e-12:
        return 1.0 if torch.allclose(a, b) else 0.0
    return float((a @ b) / denom)


def attack_comparison(
    model: nn.Module,
    x: torch.Tensor,
    *,
    mode: str = "l2min",
    eps: float | None = None,
    steps: int | None = None,
    momentum: float | None = None,
    target: int | None = None,
    clip: bool = True,
    progress: ProgressFn | None = None,
) -> AttackComparison:
    """Attack one image ``x`` ``(1, C, H, W)`` and compare Grad-CAM before and after.

    ``mode`` is ``"l2min"`` (smallest change of the predicted class; the default), ``"btr"``
    (smallest change that puts the predicted class below chance) or ``"l2"`` (a budget of
    ``eps``). With ``target`` (only for ``"l2"``), the attack pushes toward that class.
    ``eps``, ``steps`` and ``momentum`` left None take the mode's :data:`ATTACK_DEFAULTS`.
    Grad-CAM is taken for the predicted class before and after the attack.
    """
    if mode not in ATTACK_DEFAULTS:
        raise ValueError(f"attack mode must be one of {', '.join(ATTACK_DEFAULTS)}, got {mode!r}")
    defaults = ATTACK_DEFAULTS[mode]
    eps = defaults["eps"] if eps is None else eps
    steps = int(defaults["steps"]) if steps is None else steps
    momentum = defaults["momentum"] if momentum is None else momentum
    check_images(x)
    if x.shape[0] != 1:
        raise ValueError(f"attack_comparison takes one image, got a batch of {x.shape[0]}")
    if target is not None and mode != "l2":
        raise ValueError("a target class can only be given with mode 'l2'")
    with frozen(model), torch.no_grad():
        probs_before = model(x).softmax(1)[0]
    pred_before = int(probs_before.argmax())
    label = torch.tensor([pred_before if target is None else target], device=x.device)
    result = perturb(model, x, label, mode="encourage" if target is not None else mode,  # type: ignore[arg-type]
                     eps=eps, steps=steps, momentum=momentum, clip=clip, progress=progress)
    with frozen(model), torch.no_grad():
        probs_after = model(result.x_adv).softmax(1)[0]
    pred_after = int(probs_after.argmax())
    if target is not None:
        success = pred_after == target
    elif mode == "btr":
        success = float(probs_after[pred_before]) <= 1.0 / probs_after.numel()
    else:
        success = pred_after != pred_before
    warnings = []
    if mode in ("l2min", "btr") and target is None and not bool(result.sane[0]):
        warnings.append(f"the {mode} attack first succeeded late or never; raise eps or steps")
    cam = ClassicExplainer(model, "gradcam")
    before = cam.attribute(x, torch.tensor([pred_before]))[0]
    after = cam.attribute(result.x_adv, torch.tensor([pred_after]))[0]
    return AttackComparison(
        x_adv=result.x_adv, delta=result.delta, perturbation_rms=float(result.rms[0]),
        probs_before=probs_before, probs_after=probs_after, pred_before=pred_before,
        pred_after=pred_after, success=success, gradcam_before=before, gradcam_after=after,
        similarity=map_similarity(before, after), warnings=warnings,
    )
