"""How large a change to an image is, in the unit people grasp: levels of 0–255.

An image in ``[0, 1]`` is shown with 256 levels per colour channel, so a change of ``v``
is ``255 v`` levels. A perturbation's RMS (method.md's ``rms``, over all ``C×H×W``
values) and its largest single change, both in levels, say how visible it is better than
an RMS in ``[0, 1]`` does: ρ = 0.1 is an RMS of 25.5 levels.

The three words of :attr:`ChangeSize.visibility` are bands of these two numbers, with one
threshold, :data:`VISIBLE_LEVELS` = 8 levels (the L∞ budget of 8/255 that attacks on
CIFAR-10 use as "imperceptible", Madry et al. 2018):

- ``invisible``: no value changes by more than 8 levels;
- ``faint``: some values change by more than 8 levels, but the RMS stays under 8;
- ``visible``: the RMS is 8 levels or more (3 % of the range on average, over the
  whole image).

Torch is imported only by :func:`change_sizes`, so the contract's result schemas (which the
torch-free API imports) take :data:`Visibility` and the threshold from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, TypeAlias

if TYPE_CHECKING:
    import torch

LEVELS = 255
VISIBLE_LEVELS = 8.0
Visibility: TypeAlias = Literal["invisible", "faint", "visible"]
VISIBILITY_ORDER: tuple[Visibility, ...] = ("invisible", "faint", "visible")


def levels(value: float) -> str:
    """A size in levels for a sentence: one decimal under 10, whole levels from 10."""
    return f"{value:.1f}" if value < 10 else f"{value:.0f}"


@dataclass(frozen=True)
class ChangeSize:
    """The size of one change to an image.

    Attributes:
        rms: RMS of the change in ``[0, 1]`` units (comparable to ρ).
        rms_levels: the same RMS in 0–255 levels.
        max_levels: the largest change of any one value (a pixel's colour channel), in levels.
    """

    rms: float
    rms_levels: float
    max_levels: float

    @property
    def visibility(self) -> Visibility:
        """``invisible``, ``faint`` or ``visible`` (the bands of the module docstring)."""
        if self.max_levels <= VISIBLE_LEVELS:
            return "invisible"
        if self.rms_levels < VISIBLE_LEVELS:
            return "faint"
        return "visible"

    def describe(self) -> str:
        """``"RMS 0.3 levels of 255 (largest pixel change 1.7 levels)"``."""
        return (f"RMS {levels(self.rms_levels)} levels of 255 "
                f"(largest pixel change {levels(self.max_levels)} levels)")


def change_sizes(x: torch.Tensor, changed: torch.Tensor) -> list[ChangeSize]:
    """The size of the change from ``x`` to each image of ``changed``, as it is shown.

    Args:
        x: ``(C, H, W)`` or ``(1 or B, C, H, W)`` original images in ``[0, 1]``.
        changed: ``(B, C, H, W)`` changed images; clipped to ``[0, 1]`` first, as they are
            shown, so the size is that of the change a person sees (rounding each value
            to its nearest level when the picture is stored changes it by at most half a
            level).

    Returns:
        One :class:`ChangeSize` per image of ``changed``.
    """
    if changed.dim() != 4:
        raise ValueError(f"changed images must be (B, C, H, W), got {tuple(changed.shape)}")
    base = x.unsqueeze(0) if x.dim() == 3 else x
    if base.shape[1:] != changed.shape[1:] or base.shape[0] not in (1, changed.shape[0]):
        raise ValueError(f"shapes differ: {tuple(x.shape)} and {tuple(changed.shape)}")
    delta = (changed.detach().clamp(0, 1) - base.detach()).flatten(1).double()
    rms = delta.pow(2).mean(1).sqrt()
    largest = delta.abs().amax(1)
    return [ChangeSize(rms=float(r), rms_levels=float(r) * LEVELS, max_levels=float(m) * LEVELS)
            for r, m in zip(rms, largest, strict=True)]
