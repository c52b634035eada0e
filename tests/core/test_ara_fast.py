"""The fast ARA settings: the last steps of the reference schedule."""

from __future__ import annotations

import pytest

from aex.models import FAST_SETTINGS, REFERENCE_SETTINGS, tail_settings


def _step_sizes(settings: dict[str, float]) -> list[float]:
    n = int(settings["steps"])
    size = settings["eps"] * settings["overshoot"]
    return [size * (n - t) / (n * (n + 1) / 2) for t in range(n)]


@pytest.mark.parametrize("k", [1, 37, 150, 450])
def test_tail_settings_take_the_last_steps_of_the_schedule(k: int) -> None:
    tail = tail_settings(REFERENCE_SETTINGS, k)
    assert tail["steps"] == k and tail["momentum"] == REFERENCE_SETTINGS["momentum"]
    assert _step_sizes(tail) == pytest.approx(_step_sizes(REFERENCE_SETTINGS)[-k:], rel=1e-12)


def test_fast_settings_are_the_last_150_reference_steps() -> None:
    assert FAST_SETTINGS == tail_settings(REFERENCE_SETTINGS, 150)
    assert _step_sizes(FAST_SETTINGS)[-1] == pytest.approx(_step_sizes(REFERENCE_SETTINGS)[-1])


@pytest.mark.parametrize("k", [0, 451])
def test_tail_settings_refuse_steps_outside_the_schedule(k: int) -> None:
    with pytest.raises(ValueError, match="steps must be in 1..450"):
        tail_settings(REFERENCE_SETTINGS, k)
