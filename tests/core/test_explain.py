"""Adversarial explanations (method.md §4)."""

import pytest
import torch

from aex.contract.targets import choose_targets
from aex.models import (
    AdversarialExplainer,
    ImageSet,
    ModelStore,
    evaluation_indices,
    load_checkpoint,
)

CLASSES = ["cat", "dog", "ship"]


def test_targets_all_run_for_every_class(tiny: torch.nn.Module, tiny_images: torch.Tensor) -> None:
    e = AdversarialExplainer(tiny, CLASSES).explain(tiny_images[:2], targets="all", steps=10)
    assert e.image_index.tolist() == [0, 0, 0, 1, 1, 1]
    assert e.target_index.tolist() == [0, 1, 2, 0, 1, 2]
    assert e.images.shape == (6, 3, 16, 16) and e.perturbations.shape == (6, 3, 16, 16)
    assert e.probs.shape == (2, 3)
    torch.testing.assert_close(e.prob_before, e.probs[e.image_index, e.target_index])
    assert (e.prob_after > e.prob_before).all()
    assert e.images.min() >= 0 and e.images.max() <= 1
    with torch.no_grad():
        answers = tiny(e.images).argmax(1)
    assert torch.equal(e.prediction_after, answers)
    assert torch.equal(e.became_target, answers == e.target_index)
    assert e.sane.all() and not e.warnings


@pytest.mark.parametrize(("targets", "expected"), [
    ("predicted", "top"), ("true", "top"), ("second", "second"),
    (["ship", 0], [2, 0]), ("dog", [1]), (2, [2]), (["1"], [1]),
])
def test_target_resolution(tiny: torch.nn.Module, tiny_images: torch.Tensor,
                           targets: object, expected: object) -> None:
    x = tiny_images[:1]
    with torch.no_grad():
        order = tiny(x).softmax(1)[0].argsort(descending=True).tolist()
    e = AdversarialExplainer(tiny, CLASSES).explain(x, targets=targets, steps=4)  # type: ignore[arg-type]
    named = {"top": [order[0]], "second": [order[1]]}
    want = named[expected] if isinstance(expected, str) else expected
    assert e.target_index.tolist() == want


def test_true_uses_labels_when_given(tiny: torch.nn.Module, tiny_images: torch.Tensor) -> None:
    e = AdversarialExplainer(tiny).explain(tiny_images[:2], targets="true",
                                           labels=torch.tensor([2, 1]), steps=4)
    assert e.target_index.tolist() == [2, 1]


@pytest.mark.parametrize(("targets", "message"), [
    ("zebra", "unknown class 'zebra': the model knows cat, dog, ship"),
    ([5], "unknown class index 5: the model has 3 classes"),
    ([], "targets is empty"),
])
def test_bad_targets_are_value_errors(tiny: torch.nn.Module, tiny_images: torch.Tensor,
                                      targets: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AdversarialExplainer(tiny, CLASSES).explain(tiny_images[:1], targets=targets)  # type: ignore[arg-type]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"rho": 0}, "rho must be > 0"), ({"steps": 0}, "steps must be a positive integer")])
def test_bad_budget_is_a_value_error(tiny: torch.nn.Module, tiny_images: torch.Tensor,
                                     kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AdversarialExplainer(tiny).explain(tiny_images[:1], **kwargs)


def test_progress_reaches_one(tiny: torch.nn.Module, tiny_images: torch.Tensor) -> None:
    seen: list[float] = []
    AdversarialExplainer(tiny).explain(tiny_images[:2], targets="all", steps=5,
                                       progress=seen.append)
    assert seen == sorted(seen) and seen[-1] == pytest.approx(1.0)


def test_a_failed_sanity_check_is_a_warning_in_the_result(tiny: torch.nn.Module,
                                                          tiny_images: torch.Tensor) -> None:
    # With overshoot 1 the budget is reached at the very end (if ever): not a minimum.
    with pytest.warns(RuntimeWarning):
        e = AdversarialExplainer(tiny).explain(tiny_images[:1], steps=6, overshoot=1.0)
    assert e.warnings and "raise eps or steps" in e.warnings[0]
    assert not e.sane.any()


@pytest.mark.needs_shared_data
def test_robust_reference_explanations_raise_each_target_probability(
        reference_store: ModelStore, cifar_test: ImageSet) -> None:
    loaded = load_checkpoint("ref-robust", store=reference_store)
    idx = evaluation_indices(len(cifar_test), 6)
    e = AdversarialExplainer(loaded.model, loaded.classes).explain(
        cifar_test.floats(idx), targets="all", rho=0.1, steps=35)
    raised = (e.prob_after > e.prob_before).float().mean()
    assert len(e.prob_after) == 60
    assert raised >= 0.95
    assert not e.warnings


def test_second_is_the_most_confident_class_other_than_the_label_or_prediction() -> None:
    # The reference: logits with the label's entry set below the minimum, then argmax (ties
    # to the lower index). Without a label (an upload) the prediction stands in for it.
    probs = [0.1, 0.5, 0.3, 0.1]
    assert choose_targets("second", probs) == [2]
    assert choose_targets("second", probs, label=1) == [2]
    assert choose_targets("second", probs, label=2) == [1]
    assert choose_targets("second", [0.4, 0.2, 0.4], label=1) == [0]
