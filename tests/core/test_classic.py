"""Classic explainers through Captum, rendering, and the attack comparison (method.md §8)."""

import io

import pytest
import torch
from PIL import Image

from aex.models import (
    ATTACK_DEFAULTS,
    CLASSIC_METHODS,
    ClassicExplainer,
    attack_comparison,
    map_similarity,
)
from aex.models.render import difference_png, grid_png, heatmap_png, image_png


@pytest.mark.parametrize("method", CLASSIC_METHODS)
def test_each_method_gives_a_normalised_map_of_the_input_size(
        method: str, tiny: torch.nn.Module, tiny_images: torch.Tensor) -> None:
    tiny.train()
    heat = ClassicExplainer(tiny, method).attribute(tiny_images[:3], torch.tensor([0, 1, 2]))
    assert heat.shape == (3, 16, 16)
    assert heat.min() >= 0 and torch.allclose(heat.amax((1, 2)), torch.ones(3))
    assert tiny.training and all(p.grad is None for p in tiny.parameters())


def test_unknown_method(tiny: torch.nn.Module) -> None:
    with pytest.raises(ValueError, match="unknown method 'lime'"):
        ClassicExplainer(tiny, "lime")


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return Image.open(io.BytesIO(data)).size


def test_rendering(tiny_images: torch.Tensor) -> None:
    x = tiny_images[0]
    assert _png_size(image_png(x)) == (16, 16)
    assert _png_size(difference_png(x - 0.5)) == (16, 16)
    assert _png_size(heatmap_png(x, torch.rand(16, 16))) == (16, 16)
    grid = grid_png([x] * 5, ["a", "b", "c", "d", "e\nf"], columns=3)
    width, height = _png_size(grid)
    assert width > 3 * 128 and height > 2 * 128
    with pytest.raises(ValueError):
        image_png(torch.rand(2, 3, 4, 4))


def test_map_similarity() -> None:
    a = torch.rand(8, 8)
    assert map_similarity(a, a) == pytest.approx(1.0)
    assert map_similarity(a, 1 - a) == pytest.approx(-1.0)


def test_attack_comparison(tiny: torch.nn.Module, tiny_images: torch.Tensor) -> None:
    c = attack_comparison(tiny, tiny_images[:1], mode="l2min", eps=3.0, steps=60)
    assert c.success and c.pred_after != c.pred_before
    assert c.gradcam_before.shape == c.gradcam_after.shape == (16, 16)
    assert -1.0 <= c.similarity <= 1.0 and c.perturbation_rms > 0
    assert c.x_adv.min() >= 0 and c.x_adv.max() <= 1
    targeted = attack_comparison(tiny, tiny_images[:1], mode="l2", eps=1.0, steps=30,
                                 target=(c.pred_before + 1) % 3)
    assert targeted.pred_after == (c.pred_before + 1) % 3
    with pytest.raises(ValueError, match="only be given with mode 'l2'"):
        attack_comparison(tiny, tiny_images[:1], target=1)
    with pytest.raises(ValueError, match="one image"):
        attack_comparison(tiny, tiny_images[:2])


def test_a_bounded_attack_defaults_to_its_own_budget(tiny: torch.nn.Module,
                                                     tiny_images: torch.Tensor) -> None:
    # Never the minimal modes' search bound of 20 (method.md §6: ε 0.01, 7 steps).
    assert ATTACK_DEFAULTS["l2"] == {"eps": 0.01, "steps": 7, "momentum": 0.0}
    c = attack_comparison(tiny, tiny_images[:1], mode="l2")
    assert 0 < c.perturbation_rms <= 0.01 + 1e-6
    with pytest.raises(ValueError, match="attack mode"):
        attack_comparison(tiny, tiny_images[:1], mode="linf")
