"""The perturbation routine of method.md §3 on tiny deterministic networks."""

import pytest
import torch

from aex.models import MODES, MinimalAttack, SanityCheckError, perturb, rms


def _labels(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x).argmax(1)


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_meets_its_goal(mode: str, tiny: torch.nn.Module,
                                   tiny_images: torch.Tensor) -> None:
    y = _labels(tiny, tiny_images)
    if mode == "encourage":
        y = (y + 1) % 3
    minimal = mode in ("l2min", "btr")
    # Overshoot 2 lets the l2 modes reach their budget (with 1 only a straight path would).
    r = perturb(tiny, tiny_images, y, mode=mode, eps=2.0 if minimal else 0.05, steps=40,
                momentum=0.5 if minimal else 0.0, overshoot=1.0 if minimal else 2.0)
    with torch.no_grad():
        after = tiny(r.x_adv)
    assert r.success.all()
    torch.testing.assert_close(r.rms, rms(r.x_adv - tiny_images))
    if mode == "l2min":
        assert (after.argmax(1) != y).all()
    elif mode == "btr":
        assert (after.softmax(1).gather(1, y[:, None])[:, 0] <= 1 / 3).all()
    else:
        assert (r.rms >= 0.05 * 0.95).all()
        with torch.no_grad():
            before = tiny(tiny_images).softmax(1).gather(1, y[:, None])[:, 0]
        moved = after.softmax(1).gather(1, y[:, None])[:, 0] - before
        assert (moved > 0).all() if mode == "encourage" else (moved < 0).all()


def test_min_modes_return_the_smallest_successful_pass(tiny: torch.nn.Module,
                                                       tiny_images: torch.Tensor) -> None:
    y = _labels(tiny, tiny_images)
    long = perturb(tiny, tiny_images, y, mode="l2min", eps=2.0, steps=60)
    short = perturb(tiny, tiny_images, y, mode="l2min", eps=2.0, steps=8)
    assert (long.rms <= short.rms + 1e-6).all()
    assert (long.first_goal_step <= 60).all()


def test_steps_decay_linearly_and_sum_to_eps_times_overshoot(tiny: torch.nn.Module,
                                                            tiny_images: torch.Tensor) -> None:
    # l2 with a huge eps never meets its goal: every step follows the gradient, so each
    # step has rms s_t and (without momentum) the total path is Σ s_t = eps · overshoot.
    y = _labels(tiny, tiny_images)
    sizes = []
    for steps in (1, 2):
        r = perturb(tiny, tiny_images[:1], y[:1], mode="l2", eps=0.3, steps=steps, overshoot=1)
        sizes.append(float(r.rms[0]))
    assert sizes[0] == pytest.approx(0.3, rel=1e-4)  # one step of size eps
    assert sizes[1] <= 0.3 + 1e-6  # two steps 0.2 + 0.1, not aligned in general
    r = perturb(tiny, tiny_images[:1], y[:1], mode="l2", eps=0.1, steps=1, overshoot=5)
    assert float(r.rms[0]) == pytest.approx(0.5, rel=1e-4)


def test_a_batch_gives_what_its_images_give_one_by_one(tiny: torch.nn.Module,
                                                       tiny_images: torch.Tensor) -> None:
    y = _labels(tiny, tiny_images)
    whole = perturb(tiny, tiny_images, y, mode="btr", eps=2.0, steps=30, momentum=0.9)
    for i in range(len(y)):
        one = perturb(tiny, tiny_images[i:i + 1], y[i:i + 1], mode="btr", eps=2.0, steps=30,
                      momentum=0.9)
        torch.testing.assert_close(one.delta[0], whole.delta[i], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("was_training", [False, True])
def test_model_flags_and_requires_grad_are_restored(tiny: torch.nn.Module,
                                                    tiny_images: torch.Tensor,
                                                    was_training: bool) -> None:
    tiny.train(was_training)
    frozen_param = next(tiny.parameters())
    frozen_param.requires_grad_(False)
    flags = [p.requires_grad for p in tiny.parameters()]
    buffers = {k: v.clone() for k, v in tiny.state_dict().items()}
    perturb(tiny, tiny_images, torch.zeros(6, dtype=torch.long), mode="l2", eps=0.1, steps=3)
    assert tiny.training is was_training
    assert [p.requires_grad for p in tiny.parameters()] == flags
    assert all(p.grad is None for p in tiny.parameters())
    for k, v in tiny.state_dict().items():
        torch.testing.assert_close(v, buffers[k]), "eval mode must not touch BN statistics"


def test_train_mode_is_used_only_when_asked(tiny: torch.nn.Module,
                                            tiny_images: torch.Tensor) -> None:
    seen = []
    hook = tiny.register_forward_pre_hook(lambda m, _: seen.append(m.training))
    perturb(tiny, tiny_images, torch.zeros(6, dtype=torch.long), mode="l2", eps=0.1, steps=2)
    perturb(tiny, tiny_images, torch.zeros(6, dtype=torch.long), mode="l2", eps=0.1, steps=2,
            train_mode=True)
    hook.remove()
    assert seen == [False, False, True, True]


def test_affected_mask_leaves_the_other_half_untouched(tiny: torch.nn.Module,
                                                       tiny_images: torch.Tensor) -> None:
    mask = torch.tensor([1, 0, 1, 0, 1, 0])
    r = perturb(tiny, tiny_images, torch.zeros(6, dtype=torch.long), mode="l2", eps=0.1,
                steps=5, affected=mask)
    assert (r.rms[mask == 0] == 0).all() and (r.rms[mask == 1] > 0).all()


def test_clipping_is_optional(tiny: torch.nn.Module) -> None:
    x = torch.ones(2, 3, 16, 16) * 0.99
    y = _labels(tiny, x)
    free = perturb(tiny, x, y, mode="l2", eps=0.5, steps=4)
    clipped = perturb(tiny, x, y, mode="l2", eps=0.5, steps=4, clip=True)
    assert free.x_adv.max() > 1.0
    assert clipped.x_adv.max() <= 1.0 and clipped.x_adv.min() >= 0.0
    torch.testing.assert_close(clipped.delta, clipped.x_adv - x)


def test_momentum_changes_the_path(tiny: torch.nn.Module, tiny_images: torch.Tensor) -> None:
    y = _labels(tiny, tiny_images)
    a = perturb(tiny, tiny_images, y, mode="l2", eps=0.2, steps=10)
    b = perturb(tiny, tiny_images, y, mode="l2", eps=0.2, steps=10, momentum=0.9)
    assert not torch.allclose(a.delta, b.delta)


def test_sanity_check_raises_for_min_attacks_when_eps_is_too_small(
        tiny: torch.nn.Module, tiny_images: torch.Tensor) -> None:
    y = _labels(tiny, tiny_images)
    attack = MinimalAttack(tiny, mode="l2min", eps=1e-4, steps=10)
    with pytest.raises(SanityCheckError, match="raise eps or steps"):
        attack.perturb(tiny_images, y, strict=True)
    with pytest.warns(RuntimeWarning, match="raise eps or steps"):
        result = attack.perturb(tiny_images, y)
    assert not result.sane.all()


def test_progress_is_reported(tiny: torch.nn.Module, tiny_images: torch.Tensor) -> None:
    seen: list[float] = []
    perturb(tiny, tiny_images, torch.zeros(6, dtype=torch.long), mode="l2min", eps=1.0,
            steps=4, progress=seen.append)
    assert seen == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"steps": 0}, "steps must be a positive integer"),
    ({"eps": 0.0}, "eps must be > 0"),
    ({"eps": -1.0}, "eps must be > 0"),
    ({"mode": "linf"}, "unknown mode"),
    ({"overshoot": 0.5}, "overshoot"),
    ({"momentum": 1.0}, "momentum"),
])
def test_bad_options_are_value_errors(tiny: torch.nn.Module, tiny_images: torch.Tensor,
                                      kwargs: dict, message: str) -> None:
    options = {"mode": "l2", "eps": 0.1, "steps": 3, **kwargs}
    with pytest.raises(ValueError, match=message):
        perturb(tiny, tiny_images, torch.zeros(6, dtype=torch.long), **options)


@pytest.mark.parametrize(("x", "message"), [
    (torch.rand(3, 16, 16), "must be a \\(B, C, H, W\\)"),
    (torch.rand(1, 3, 16, 16) * 255, "must lie in \\[0, 1\\]"),
    (torch.zeros(1, 3, 16, 16, dtype=torch.uint8), "floating point"),
    (torch.full((1, 3, 16, 16), float("nan")), "NaN"),
])
def test_bad_images_are_value_errors(tiny: torch.nn.Module, x: torch.Tensor,
                                     message: str) -> None:
    with pytest.raises(ValueError, match=message):
        perturb(tiny, x, torch.zeros(len(x), dtype=torch.long), mode="l2", eps=0.1, steps=3)


@pytest.mark.parametrize("mode", ["l2min", "btr"])
def test_min_modes_leave_the_image_unchanged_when_the_goal_is_never_met(
        mode: str, tiny: torch.nn.Module, tiny_images: torch.Tensor) -> None:
    # As the reference: δ = 0 (not the last pass's δ), told apart by ``success``.
    y = _labels(tiny, tiny_images)
    r = perturb(tiny, tiny_images, y, mode=mode, eps=1e-4, steps=5)
    assert not r.success.any() and (r.first_goal_step == 6).all()
    assert torch.equal(r.x_adv, tiny_images) and (r.rms == 0).all()


@pytest.mark.parametrize(("labels", "message"), [
    (torch.tensor([0, 1, 2, 3, 0, 1]), "label 3 is out of range 0..2"),
    (torch.tensor([0, 1, -1, 2, 0, 1]), "label -1 is out of range"),
    (torch.zeros(6), "integer class indices"),
    (torch.zeros(5, dtype=torch.long), "shape \\(6,\\)"),
])
def test_bad_labels_are_value_errors_before_the_routine_runs(
        tiny: torch.nn.Module, tiny_images: torch.Tensor, labels: torch.Tensor,
        message: str) -> None:
    seen: list[float] = []
    with pytest.raises(ValueError, match=message):
        perturb(tiny, tiny_images, labels, mode="l2min", eps=1.0, steps=3,
                progress=seen.append)
    assert seen == []  # refused at the first pass, before any loss or step


class _RowCounter(torch.nn.Module):
    """A BatchNorm-free network (train and eval mode compute the same function) that
    counts the rows it is run on."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.Softplus(),
                                       torch.nn.Flatten(), torch.nn.Linear(8 * 16 * 16, 3))
        self.rows = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rows += x.shape[0]
        return self.net(x)


@pytest.mark.parametrize(("mode", "clip", "momentum"), [
    ("encourage", True, 0.0), ("encourage", False, 0.5), ("l2", False, 0.0), ("l2", True, 0.9)])
def test_rows_that_met_their_budget_skip_the_pass_with_the_same_result(
        mode: str, clip: bool, momentum: float, tiny_images: torch.Tensor) -> None:
    """In eval mode the l2/encourage routine leaves rows whose budget is reached out of
    the network pass; train mode (no skipping) on a network without BatchNorm must give
    the very same perturbations."""
    net = _RowCounter()
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    affected = torch.tensor([1, 1, 1, 1, 0, 1])
    settings = {"mode": mode, "eps": 0.05, "steps": 30, "overshoot": 5.0, "clip": clip,
                "momentum": momentum, "affected": affected}
    skipping = perturb(net, tiny_images, y, **settings)  # type: ignore[arg-type]
    skipped_rows = net.rows
    net.rows = 0
    every = perturb(net, tiny_images, y, train_mode=True, **settings)  # type: ignore[arg-type]
    assert net.rows == 30 * 6
    assert skipped_rows < 0.75 * net.rows
    torch.testing.assert_close(skipping.delta, every.delta, rtol=0, atol=1e-6)
    assert torch.equal(skipping.first_goal_step, every.first_goal_step)
    assert torch.equal(skipping.delta[4], torch.zeros_like(skipping.delta[4]))
