"""Adversarial explanations, g_explain+ (method.md §4)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from aex.contract.targets import choose_targets, resolve_targets

from ._inference import inference_model
from ._perturb import PerturbResult, ProgressFn, check_images, enforce_sanity, frozen, perturb

TargetsArg = str | int | Sequence[int | str]
ROWS_PER_PASS = 128
"""Most (image, target) rows the routine runs as one batch (bounds its memory)."""


def _select(result: PerturbResult, rows: torch.Tensor) -> PerturbResult:
    """The rows ``rows`` (an index or mask) of a routine's result."""
    return PerturbResult(result.x_adv[rows], result.delta[rows], result.rms[rows],
                         result.success[rows], result.first_goal_step[rows], result.sane[rows])


def _concat(parts: list[PerturbResult]) -> PerturbResult:
    """The routine's results of consecutive row ranges as one result."""
    return PerturbResult(*(torch.cat([getattr(r, name) for r in parts]) for name in (
        "x_adv", "delta", "rms", "success", "first_goal_step", "sane")))


@dataclass
class Explanation:
    """Adversarial explanations for a batch of images, one row per (image, target) pair.

    Attributes:
        image_index: ``(T,)`` which input image each row explains.
        target_index: ``(T,)`` the target class of each row.
        images: ``(T, C, H, W)`` explanation images ``x + δ``.
        perturbations: ``(T, C, H, W)`` the changes ``δ``.
        perturbation_rms: ``(T,)`` ``rms(δ)``.
        prob_before, prob_after: ``(T,)`` target-class probability on ``x`` and ``x + δ``.
        probs: ``(B, C_n)`` softmax probabilities of the inputs.
        prediction_after: ``(T,)`` the model's answer on ``x + δ``.
        sane: ``(T,)`` the routine's sanity check (method.md §3): the budget was first
            reached within the first half of the steps.
        warnings: the sanity check's warnings (method.md §3), if any.
    """

    image_index: torch.Tensor
    target_index: torch.Tensor
    images: torch.Tensor
    perturbations: torch.Tensor
    perturbation_rms: torch.Tensor
    prob_before: torch.Tensor
    prob_after: torch.Tensor
    probs: torch.Tensor
    prediction_after: torch.Tensor
    sane: torch.Tensor
    warnings: list[str] = field(default_factory=list)

    @property
    def became_target(self) -> torch.Tensor:
        """``(T,)`` whether the answer on ``x + δ`` is the row's target class."""
        return self.prediction_after == self.target_index


class AdversarialExplainer:
    """Explain a classifier's decisions by the smallest visible change toward each class.

    The routine runs in ``encourage`` mode toward each target with ``eps = rho`` and
    ``overshoot`` (defaults from the paper: ρ = 0.1, 35 steps, overshoot 5, no momentum).

    Args:
        model: maps ``[0, 1]`` images ``(B, C, H, W)`` to logits.
        classes: class names in logit order, so that targets can be given by name.

    Example::

        explainer = AdversarialExplainer(model, classes=["airplane", ...])
        result = explainer.explain(x, targets="all")       # x: (1, 3, 32, 32) in [0, 1]
        result.images[3]                                   # the image made more "cat"-like
    """

    def __init__(self, model: nn.Module, classes: Sequence[str] | None = None) -> None:
        self.model = model
        self.classes = list(classes) if classes is not None else None

    def explain(
        self,
        images: torch.Tensor,
        targets: TargetsArg = "all",
        *,
        rho: float = 0.1,
        steps: int = 35,
        overshoot: float = 5.0,
        momentum: float = 0.0,
        clip: bool = True,
        labels: torch.Tensor | None = None,
        progress: ProgressFn | None = None,
    ) -> Explanation:
        """Explain each image toward each of its targets.

        Args:
            images: ``(B, C, H, W)`` in ``[0, 1]``, on the model's device.
            targets: ``"all"``, ``"predicted"``, ``"true"``, ``"second"``, or class
                indices/names (applied to every image); see :mod:`aex.contract.targets`
                for what each word means.
            rho: RMS budget ρ > 0. steps: routine steps > 0. overshoot: ≥ 1.
            clip: clip the explanation images to ``[0, 1]`` (for display).
            labels: ``(B,)`` true classes, used by ``targets="true"``.
            progress: called with the fraction done.

        All (image, target) rows run as one batch (up to ``ROWS_PER_PASS``) through the
        network's inference copy (:func:`inference_model`: BatchNorm folded, channels-last),
        which computes the same function up to float rounding. A failed sanity check
        becomes a warning in the result (on non-robust networks it fails routinely).
        """
        check_images(images)
        if not rho > 0:
            raise ValueError(f"rho must be > 0, got {rho}")
        if int(steps) != steps or steps <= 0:
            raise ValueError(f"steps must be a positive integer, got {steps}")
        fast = inference_model(self.model)
        with frozen(fast), torch.no_grad():
            probs = fast(images).softmax(1)
        classes = self.classes or [str(k) for k in range(probs.shape[1])]
        resolved = resolve_targets(targets, classes)
        per_image = [
            choose_targets(resolved, probs[i].tolist(),
                           None if labels is None else int(labels[i]))
            for i in range(images.shape[0])
        ]
        image_index = torch.tensor([i for i, t in enumerate(per_image) for _ in t],
                                   dtype=torch.long, device=images.device)
        target_index = torch.tensor([k for t in per_image for k in t], dtype=torch.long,
                                    device=images.device)
        total = image_index.numel()
        parts: list[PerturbResult] = []
        for start in range(0, total, ROWS_PER_PASS):
            rows = slice(start, start + ROWS_PER_PASS)

            def report(fraction: float, _done: int = start, _n: int = len(image_index[rows])
                       ) -> None:
                if progress is not None:
                    progress((_done + fraction * _n) / total)

            parts.append(perturb(fast, images[image_index[rows]], target_index[rows],
                                 mode="encourage", eps=rho, steps=steps, overshoot=overshoot,
                                 momentum=momentum, clip=clip, progress=report))
        result = _concat(parts)
        warnings: list[str] = []
        for i in range(images.shape[0]):
            own = image_index == i
            warnings += enforce_sanity(_select(result, own), f"explanation of image {i}",
                                       strict=False)
        with frozen(fast), torch.no_grad():
            probs_after = fast(result.x_adv).softmax(1)
        after = probs_after.gather(1, target_index[:, None])[:, 0]
        deltas = result.delta
        return Explanation(
            image_index=image_index,
            target_index=target_index,
            images=result.x_adv,
            perturbations=deltas,
            perturbation_rms=deltas.flatten(1).pow(2).mean(1).sqrt(),
            prob_before=probs[image_index, target_index],
            prob_after=after,
            probs=probs,
            prediction_after=probs_after.argmax(1),
            sane=result.sane,
            warnings=warnings,
        )
