"""Sizes of changes in 0–255 levels, and one network's explanations and minimal attack with
a caption of what was measured (``aex.models.explain_and_attack``)."""

from __future__ import annotations

import math

import pytest
import torch

from aex.models import (
    AttackComparison,
    ChangeSize,
    ExplainAndAttack,
    Explanation,
    attack_comparison,
    change_sizes,
    explain_and_attack,
)
from aex.models._sidebyside import caption

CLASSES = ["cat", "dog", "ship"]


def test_sizes_are_in_levels_of_the_clipped_change() -> None:
    x = torch.full((1, 3, 4, 4), 0.5)
    changed = x.repeat(2, 1, 1, 1)
    changed[0, 1, 2, 3] += 2 / 255
    changed[1] += 0.8  # every value leaves the range: shown as 1.0, a change of 127.5 levels
    small, clipped = change_sizes(x, changed)
    assert small.max_levels == pytest.approx(2.0)
    assert small.rms_levels == pytest.approx(2.0 / math.sqrt(48))
    assert small.rms == pytest.approx(small.rms_levels / 255)
    assert clipped.max_levels == pytest.approx(127.5) and clipped.rms_levels == pytest.approx(127.5)
    assert change_sizes(x[0], changed) == [small, clipped]  # one (C, H, W) original for all
    with pytest.raises(ValueError, match="shapes differ"):
        change_sizes(x, changed[:, :, :2])


@pytest.mark.parametrize(("rms_levels", "max_levels", "word"), [
    (0.3, 1.7, "invisible"),
    (6.0, 8.0, "invisible"),   # nothing over 8 levels
    (6.0, 40.0, "faint"),      # some values over 8, RMS under 8
    (7.99, 8.01, "faint"),
    (8.0, 40.0, "visible"),
    (25.5, 120.0, "visible"),  # an explanation at ρ = 0.1
])
def test_visibility_bands(rms_levels: float, max_levels: float, word: str) -> None:
    assert ChangeSize(rms_levels / 255, rms_levels, max_levels).visibility == word


def test_describe_rounds_like_people_read() -> None:
    assert ChangeSize(0.0012, 0.31, 1.74).describe() == (
        "RMS 0.3 levels of 255 (largest pixel change 1.7 levels)")
    assert ChangeSize(0.1, 25.5, 117.2).describe() == (
        "RMS 26 levels of 255 (largest pixel change 117 levels)")


Measured = tuple[torch.Tensor, torch.nn.Module, ExplainAndAttack, list[float]]


@pytest.fixture
def measured(tiny: torch.nn.Module) -> Measured:
    model = tiny
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    seen: list[float] = []
    found = explain_and_attack(model, x, classes=CLASSES, progress=seen.append)
    return x, model, found, seen


def test_default_targets_are_the_predicted_and_second_class(measured: Measured) -> None:
    x, _, found, _ = measured
    order = found.probs.argsort(descending=True).tolist()
    assert found.targets == order[:2]
    assert found.explanation.target_index.tolist() == order[:2]
    assert (found.explanation.prob_after > found.explanation.prob_before).all()
    assert found.rho == 0.1 and found.steps == 35


def test_sizes_match_the_changes_shown(measured: Measured) -> None:
    x, model, found, _ = measured
    shown = found.explanation.images.clamp(0, 1)
    assert torch.equal(shown, found.explanation.images)  # the explanations are clipped
    for row, size in enumerate(found.explanation_sizes):
        delta = shown[row] - x[0]
        assert size.rms_levels == pytest.approx(255 * float(delta.pow(2).mean().sqrt()), rel=1e-5)
        assert size.max_levels == pytest.approx(255 * float(delta.abs().max()), rel=1e-5)
        assert size.rms == pytest.approx(float(found.explanation.perturbation_rms[row]), rel=1e-4)
    attack = found.attack
    assert found.attack_size.rms == pytest.approx(attack.perturbation_rms, rel=1e-4)
    # the same attack as attack_comparison's own, with its defaults
    again = attack_comparison(model, x)
    assert again.pred_after == attack.pred_after
    assert again.perturbation_rms == pytest.approx(attack.perturbation_rms, rel=1e-5)


def test_caption_states_the_measured_numbers(measured: Measured) -> None:
    _, _, found, seen = measured
    text = found.caption
    before = CLASSES[found.attack.pred_before]
    after = CLASSES[found.attack.pred_after]
    assert found.attack.success
    assert (f"flips this network's answer from {before} to {after} has "
            f"{found.attack_size.describe()}: {found.attack_size.visibility}.") in text
    for row, k in enumerate(found.targets):
        assert (f"{CLASSES[k]} (p {float(found.explanation.prob_before[row]):.2f} → "
                f"{float(found.explanation.prob_after[row]):.2f})") in text
    assert "ρ = 0.1" in text
    assert f"correlates at {found.attack.similarity:.2f}." in text
    assert seen == sorted(seen) and seen[-1] == pytest.approx(1.0)


def test_selections_are_unioned_without_repeats(tiny: torch.nn.Module) -> None:
    model = tiny
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        order = model(x).softmax(1)[0].argsort(descending=True).tolist()
    found = explain_and_attack(model, x, classes=CLASSES,
                               targets=["predicted", [order[0], "ship"], "second"], steps=5)
    expected = list(dict.fromkeys([order[0], 2, order[1]]))
    assert found.targets == expected == found.explanation.target_index.tolist()
    with pytest.raises(ValueError, match="one image"):
        explain_and_attack(model, x.repeat(2, 1, 1, 1), classes=CLASSES)
    with pytest.raises(ValueError, match="targets is empty"):
        explain_and_attack(model, x, classes=CLASSES, targets=[])


def _explanation(sizes_rms: list[float]) -> Explanation:
    n = len(sizes_rms)
    return Explanation(
        image_index=torch.zeros(n, dtype=torch.long), target_index=torch.arange(n),
        images=torch.zeros(n, 3, 2, 2), perturbations=torch.zeros(n, 3, 2, 2),
        perturbation_rms=torch.tensor(sizes_rms), prob_before=torch.full((n,), 0.2),
        prob_after=torch.full((n,), 0.9), probs=torch.full((1, 3), 1 / 3),
        prediction_after=torch.arange(n), sane=torch.ones(n, dtype=torch.bool))


def _attack(success: bool) -> AttackComparison:
    zeros = torch.zeros(2, 2)
    return AttackComparison(
        x_adv=torch.zeros(1, 3, 2, 2), delta=torch.zeros(1, 3, 2, 2), perturbation_rms=0.01,
        probs_before=torch.tensor([0.6, 0.3, 0.1]), probs_after=torch.tensor([0.4, 0.5, 0.1]),
        pred_before=0, pred_after=1 if success else 0, success=success,
        gradcam_before=zeros, gradcam_after=zeros, similarity=0.87, warnings=[])


def size(rms_levels: float, max_levels: float) -> ChangeSize:
    return ChangeSize(rms_levels / 255, rms_levels, max_levels)


def test_caption_points_at_the_explanations_when_the_attack_is_not_visible() -> None:
    visible = [size(25.5, 110), size(25.0, 96)]
    text = caption(CLASSES, _explanation([0.1, 0.1]), visible, _attack(True), size(3.1, 21), 0.1)
    assert text.startswith(
        "The smallest change found that flips this network's answer from cat to dog has "
        "RMS 3.1 levels of 255 (largest pixel change 21 levels): faint.")
    assert "the visible change is in the explanations (ρ = 0.1), not in the minimal attack" in text
    assert ("The explanations toward cat (p 0.20 → 0.90) and dog (p 0.20 → 0.90), ρ = 0.1, "
            "change the image by RMS 25–26 levels of 255 (largest pixel change 96–110 levels): "
            "visible.") in text
    assert text.endswith("correlates at 0.87.")


def test_caption_without_pointer_when_the_attack_is_visible_or_failed() -> None:
    one = [size(25.5, 110)]
    text = caption(CLASSES, _explanation([0.1]), one, _attack(True), size(12, 60), 0.1)
    assert "visible change is in the explanations" not in text
    assert "RMS 12 levels of 255 (largest pixel change 60 levels): visible." in text
    assert "The explanation toward cat (p 0.20 → 0.90), ρ = 0.1, changes the image" in text
    failed = caption(CLASSES, _explanation([0.1]), one, _attack(False), size(1, 3), 0.1)
    assert failed.startswith("The minimal attack found no change that flips this network's "
                             "answer (cat)")
    assert "visible change is in the explanations" not in failed
    mixed = caption(CLASSES, _explanation([0.1, 0.01]), [size(25.5, 110), size(2, 30)],
                    _attack(True), size(1, 3), 0.1)
    assert "(largest pixel change 30–110 levels): faint to visible." in mixed
    many = caption(CLASSES + ["frog"], _explanation([0.1] * 4), [size(25.5, 110)] * 4,
                   _attack(True), size(1, 3), 0.1)
    assert "toward 4 classes, ρ = 0.1" in many
