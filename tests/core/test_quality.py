"""Explanation-quality measures (aex.models.quality) on tiny networks with known answers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from aex.models.quality import (
    BASELINE,
    METHODS,
    QualitySettings,
    attribution_maps,
    benchmark_chunk,
    blur,
    cascading_randomisation,
    counterfactual_validity,
    deletion_insertion,
    infidelity,
    markdown_table,
    max_sensitivity,
    parameterised_layers,
    rank_correlation,
    summarise,
)

SIZE = 16


class PatchModel(nn.Module):
    """Two classes on ``1×16×16`` images: class 1's logit is ``Σ W·x − 12`` with ``W`` one
    on a 4×4 patch in the top-left corner and zero elsewhere; class 0's logit is 0. The
    true attribution of class 1 is ``W``."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(SIZE * SIZE, 2)
        weight = torch.zeros(2, SIZE, SIZE)
        weight[1, :4, :4] = 1.0
        with torch.no_grad():
            self.linear.weight.copy_(weight.flatten(1))
            self.linear.bias.copy_(torch.tensor([0.0, -12.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))


@pytest.fixture
def patch_model() -> PatchModel:
    return PatchModel().eval()


@pytest.fixture
def patch_images() -> torch.Tensor:
    """Dark noisy backgrounds with a bright patch: the model says class 1 (p ≈ 0.98)."""
    x = 0.4 * torch.rand(8, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(3))
    x[:, :, :4, :4] = 1.0
    return x


def _true_map() -> torch.Tensor:
    truth = torch.zeros(SIZE, SIZE)
    truth[:4, :4] = 1.0
    return truth


SETTINGS = QualitySettings(blur_sigma=2.0, curve_steps=16)


def test_saliency_of_a_linear_model_is_its_weights(patch_model: PatchModel,
                                                   patch_images: torch.Tensor) -> None:
    maps = attribution_maps(patch_model, patch_images, torch.ones(8, dtype=torch.long),
                            "saliency")
    assert torch.allclose(maps, _true_map().expand(8, -1, -1))


def test_deletion_by_the_weights_beats_random_ranking(patch_model: PatchModel,
                                                      patch_images: torch.Tensor) -> None:
    target = torch.ones(8, dtype=torch.long)
    truth = deletion_insertion(patch_model, patch_images, target,
                               _true_map().expand(8, -1, -1), SETTINGS)
    generator = torch.Generator().manual_seed(0)
    random = deletion_insertion(
        patch_model, patch_images, target,
        attribution_maps(patch_model, patch_images, target, BASELINE, generator=generator),
        SETTINGS)
    assert (truth.deletion_area < random.deletion_area - 0.2).all()
    assert (truth.insertion_area > random.insertion_area + 0.1).all()
    # Both curves start at the model's answer on the image and end on the replacement.
    with torch.no_grad():
        p_image = patch_model(patch_images).softmax(1)[:, 1]
        filled = blur(patch_images, SETTINGS.blur_sigma)
        p_fill = patch_model(filled).softmax(1)[:, 1]
    assert torch.allclose(truth.deletion[:, 0], p_image)
    assert torch.allclose(truth.deletion[:, -1], p_fill)
    assert torch.allclose(truth.insertion[:, 0], p_fill)
    assert torch.allclose(truth.insertion[:, -1], p_image)
    assert truth.fractions[0] == 0 and truth.fractions[-1] == 1


def test_the_replacement_carries_no_class(patch_model: PatchModel,
                                          patch_images: torch.Tensor) -> None:
    """Blurred and noise-imputed pixels take the model to the other class, as black would
    not be needed to; a constant image blurs to itself."""
    flat = torch.full((1, 3, 8, 8), 0.3)
    assert torch.allclose(blur(flat, 2.0), flat)
    for replacement in ("blur", "noise"):
        settings = QualitySettings(blur_sigma=2.0, curve_steps=4, replacement=replacement)
        curves = deletion_insertion(patch_model, patch_images, torch.ones(8, dtype=torch.long),
                                    _true_map().expand(8, -1, -1), settings,
                                    torch.Generator().manual_seed(0))
        assert (curves.deletion[:, -1] < 0.5).all()


def test_infidelity_of_the_true_attribution_is_zero(patch_model: PatchModel,
                                                    patch_images: torch.Tensor) -> None:
    target = torch.ones(8, dtype=torch.long)
    generator = torch.Generator().manual_seed(0)
    exact = infidelity(patch_model, patch_images, target, _true_map().expand(8, -1, -1),
                       generator=generator)
    random = infidelity(patch_model, patch_images, target,
                        torch.rand(8, SIZE, SIZE, generator=generator), generator=generator)
    assert exact.abs().max() < 1e-6
    assert (random > 1e-3).all()


def test_max_sensitivity_of_a_constant_map_is_zero(patch_model: PatchModel,
                                                   patch_images: torch.Tensor) -> None:
    target = torch.ones(8, dtype=torch.long)

    def saliency(images: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return attribution_maps(patch_model, images, target, "saliency")

    def the_image(images: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return images[:, 0]

    assert max_sensitivity(saliency, patch_images, target).abs().max() < 1e-6
    moved = max_sensitivity(the_image, patch_images, target)
    assert (moved > 0.005).all() and (moved < 0.1).all()


def test_rank_correlation() -> None:
    a = torch.arange(16.0).view(1, 4, 4)
    assert rank_correlation(a, a * 3 + 1).item() == pytest.approx(1.0)
    assert rank_correlation(a, -a).item() == pytest.approx(-1.0)
    flat = torch.ones(1, 4, 4)
    assert rank_correlation(flat, flat).item() == 1.0
    assert rank_correlation(flat, a).item() == 0.0


def test_randomisation_changes_the_weights_map_and_flags_a_map_that_ignores_the_model(
        patch_model: PatchModel, patch_images: torch.Tensor) -> None:
    target = torch.ones(8, dtype=torch.long)
    assert parameterised_layers(patch_model) == ["linear"]
    weights = cascading_randomisation(
        patch_model, patch_images, target,
        lambda net, x, t: attribution_maps(net, x, t, "saliency"))
    assert weights.stages == [1] and weights.top_layers == ["linear"]
    assert weights.correlation.shape == (1, 8)
    assert weights.correlation.abs().max() < 0.5 and not weights.flagged
    image = cascading_randomisation(patch_model, patch_images, target,
                                    lambda net, x, t: x[:, 0])
    assert torch.allclose(image.correlation, torch.ones(1, 8)) and image.flagged
    assert torch.equal(patch_model.linear.weight[1].view(SIZE, SIZE), _true_map())


def test_cascade_goes_from_the_top_down(tiny: nn.Module, tiny_images: torch.Tensor) -> None:
    layers = parameterised_layers(tiny)
    assert layers[0] == "head" and layers[-1] == "features.0"
    check = cascading_randomisation(
        tiny, tiny_images[:4], torch.zeros(4, dtype=torch.long),
        lambda net, x, t: attribution_maps(net, x, t, "saliency"))
    assert check.stages == [1, 2, 3, 5] and check.top_layers[0] == "head"
    assert check.correlation.shape == (4, 4)
    assert float(check.correlation[-1].mean()) < 0.5


def test_counterfactual_validity_on_the_linear_model(patch_model: PatchModel,
                                                     patch_images: torch.Tensor) -> None:
    """Toward class 0 the explanation must dim the patch: a change of ρ = 0.3 does (the
    logit needs to fall by ~4), one of ρ = 0.01 does not."""
    target = torch.zeros(8, dtype=torch.long)
    enough = counterfactual_validity(patch_model, patch_images, target,
                                     QualitySettings(rho=0.3))
    assert enough.rises.all() and enough.became_target.all() and enough.valid.all()
    assert torch.allclose(enough.perturbation_rms, torch.full((8,), 0.3), atol=0.05)
    small = counterfactual_validity(patch_model, patch_images, target,
                                    QualitySettings(rho=0.01))
    assert small.rises.all() and not small.became_target.any() and not small.valid.any()


def test_benchmark_chunk_and_table(tiny: nn.Module, tiny_images: torch.Tensor) -> None:
    settings = QualitySettings(steps=6, ig_steps=4, smooth_samples=2, curve_steps=4,
                               infidelity_samples=2, sensitivity_samples=2, sanity_images=2)
    records = [benchmark_chunk(tiny, tiny_images[:3], m, 0, settings, sanity=True)
               for m in (*METHODS, BASELINE)]
    records.append(benchmark_chunk(tiny, tiny_images[3:5], "saliency", 3, settings))
    records.append(benchmark_chunk(tiny, tiny_images[5:], "saliency", 5, settings))  # one
    rows = summarise(records)
    assert set(rows) == {*METHODS, BASELINE}
    assert rows["saliency"]["n_images"] == 6 and rows["gradcam"]["n_images"] == 3
    assert rows["saliency"]["max_sensitivity_images"] == 6
    for method in METHODS:
        row = rows[method]
        assert 0 <= row["deletion_area"] <= 1 and 0 <= row["insertion_area"] <= 1
        assert row["infidelity"] >= 0 and row["max_sensitivity"] >= 0
        assert len(row["randomisation"]["correlation"]) == 4
        assert len(row["deletion_curve"]) == 5 and row["seconds_per_image"] > 0
    assert rows[BASELINE]["infidelity"] is None and "randomisation" not in rows[BASELINE]
    cf = rows["adversarial"]["counterfactual"]
    assert cf["n_pairs"] == 3 and 0 <= cf["valid"] <= cf["rises"] <= 1
    table = markdown_table(rows)
    assert table.count("\n") == 2 + len(rows)
    assert table.splitlines()[2].startswith("| adversarial |")
