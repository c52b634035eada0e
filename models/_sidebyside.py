"""The paper's argument for one network and one image (method.md §4 and §8): its
adversarial explanations toward chosen classes and its minimal attack with Grad-CAM before
and after, with the size of each change in 0–255 levels and a caption saying what was
measured. Two of these side by side, a standard and a robust network, show the claim."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from aex.contract.targets import choose_targets, resolve_targets

from ._compare import ATTACK_STEPS, AttackComparison, attack_comparison
from ._explain import AdversarialExplainer, Explanation
from ._perturb import ProgressFn, check_images, frozen
from .levels import VISIBILITY_ORDER, ChangeSize, change_sizes, levels

TargetSelection = str | int | Sequence[str | int]
DEFAULT_TARGETS: tuple[str, ...] = ("predicted", "second")
NAMED_TARGETS = 3  # a caption names at most this many target classes


@dataclass
class ExplainAndAttack:
    """What one network shows on one image.

    Attributes:
        probs: ``(C_n,)`` softmax probabilities of the input.
        targets: the explained classes, in the order of ``explanation``'s rows.
        explanation: the adversarial explanations toward ``targets`` (clipped to ``[0, 1]``).
        explanation_sizes: the size of each explanation's change, as shown.
        attack: the minimal (``l2min``) attack with Grad-CAM before and after.
        attack_size: the size of the attack's change, as shown.
        rho, steps: the explanations' budget ρ and steps.
        caption: sentences stating what was measured.
    """

    probs: torch.Tensor
    targets: list[int]
    explanation: Explanation
    explanation_sizes: list[ChangeSize]
    attack: AttackComparison
    attack_size: ChangeSize
    rho: float
    steps: int
    caption: str


def _selected(selections: Sequence[TargetSelection], classes: Sequence[str],
              probs: Sequence[float]) -> list[int]:
    """The distinct classes the selections name for one image, in order."""
    chosen: list[int] = []
    for selection in selections:
        resolved = resolve_targets(selection, classes)
        chosen += [k for k in choose_targets(resolved, probs) if k not in chosen]
    return chosen


def explain_and_attack(
    model: nn.Module,
    x: torch.Tensor,
    *,
    classes: Sequence[str],
    targets: Sequence[TargetSelection] = DEFAULT_TARGETS,
    rho: float = 0.1,
    steps: int = 35,
    progress: ProgressFn | None = None,
) -> ExplainAndAttack:
    """Explain one image toward the chosen classes and attack it minimally, measuring both.

    Args:
        model: maps ``[0, 1]`` images to logits (a registry model, for Grad-CAM).
        x: ``(1, C, H, W)`` in ``[0, 1]``, on the model's device.
        classes: class names in logit order.
        targets: selections, each a word (``predicted``, ``second``, ``true``, ``all``) or
            classes (names or indices; :mod:`aex.contract.targets`); their union is
            explained. Default: the predicted class and the second most likely.
        rho, steps: the explanations' budget and steps (the paper's 0.1 and 35).
        progress: called with the fraction done.

    The explanations and the attack both clip the image to ``[0, 1]`` (what is shown);
    the attack runs in ``l2min`` mode with :func:`attack_comparison`'s defaults.
    """
    check_images(x)
    if x.shape[0] != 1:
        raise ValueError(f"explain_and_attack takes one image, got a batch of {x.shape[0]}")
    if not targets:
        raise ValueError("targets is empty: give at least one selection")
    with frozen(model), torch.no_grad():
        probs = model(x).softmax(1)[0]
    indices = _selected(targets, classes, probs.tolist())
    share = steps / (steps + ATTACK_STEPS + 1)

    def part(start: float, width: float) -> ProgressFn | None:
        if progress is None:
            return None
        report = progress
        return lambda fraction: report(start + width * fraction)

    explanation = AdversarialExplainer(model, classes=classes).explain(
        x, targets=indices, rho=rho, steps=steps, progress=part(0.0, share))
    attack = attack_comparison(model, x, mode="l2min", progress=part(share, 1.0 - share))
    explanation_sizes = change_sizes(x, explanation.images)
    (attack_size,) = change_sizes(x, attack.x_adv)
    text = caption(classes, explanation, explanation_sizes, attack, attack_size, rho)
    return ExplainAndAttack(probs=probs, targets=indices, explanation=explanation,
                            explanation_sizes=explanation_sizes, attack=attack,
                            attack_size=attack_size, rho=rho, steps=steps, caption=text)


def _band(sizes: Sequence[ChangeSize]) -> str:
    words = sorted({s.visibility for s in sizes}, key=VISIBILITY_ORDER.index)
    return words[0] if len(words) == 1 else f"{words[0]} to {words[-1]}"


def _span(values: Sequence[float]) -> str:
    low, high = levels(min(values)), levels(max(values))
    return low if low == high else f"{low}–{high}"


def _names(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def caption(classes: Sequence[str], explanation: Explanation,
            explanation_sizes: Sequence[ChangeSize], attack: AttackComparison,
            attack_size: ChangeSize, rho: float) -> str:
    """Sentences stating what was measured on one network: the minimal attack's change and
    its visibility, where the visible change is when the attack's is not, the
    explanations' changes and probabilities, and how far Grad-CAM moved."""
    before, after = classes[attack.pred_before], classes[attack.pred_after]
    if attack.success:
        sentences = [f"The smallest change found that flips this network's answer from "
                     f"{before} to {after} has {attack_size.describe()}: "
                     f"{attack_size.visibility}."]
    else:
        sentences = [f"The minimal attack found no change that flips this network's answer "
                     f"({before}); the change it returned has {attack_size.describe()}."]
    visible = [s.visibility == "visible" for s in explanation_sizes]
    if attack.success and attack_size.visibility != "visible" and any(visible):
        sentences.append(f"On this network the visible change is in the explanations "
                         f"(ρ = {rho:g}), not in the minimal attack.")
    rows = [(classes[int(k)], float(b), float(a)) for k, b, a in zip(
        explanation.target_index, explanation.prob_before, explanation.prob_after, strict=True)]
    if len(rows) <= NAMED_TARGETS:
        toward = _names([f"{name} (p {b:.2f} → {a:.2f})" for name, b, a in rows])
    else:
        toward = f"{len(rows)} classes"
    noun, verb = ("explanation", "changes") if len(rows) == 1 else ("explanations", "change")
    sentences.append(
        f"The {noun} toward {toward}, ρ = {rho:g}, {verb} the image by RMS "
        f"{_span([s.rms_levels for s in explanation_sizes])} levels of 255 (largest pixel "
        f"change {_span([s.max_levels for s in explanation_sizes])} levels): "
        f"{_band(explanation_sizes)}.")
    sentences.append(f"Grad-CAM of the answer before and after the attack correlates at "
                     f"{attack.similarity:.2f}.")
    return " ".join(sentences)
