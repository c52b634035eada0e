"""ARA (method.md §7): integration, the routine's settings, the CLI."""

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from aex.cli import main
from aex.models import (
    ModelStore,
    SanityCheckError,
    ara,
    ara_from_radii,
    evaluation_indices,
    import_reference,
)


def test_integration_has_known_answers() -> None:
    # All images need exactly 0.5: A(r) = 1 until 0.5; area = 0.5 · (1 − 1/10).
    value, _, _ = ara_from_radii(torch.full((100,), 0.5), num_classes=10)
    assert value == pytest.approx(0.45, rel=2e-3)
    # Radii uniform on [0, 1]: A(r) = 1 − r; area = ∫₀^0.9 (0.9 − r) dr = 0.405.
    value, r, curve = ara_from_radii(torch.linspace(0, 1, 10001), num_classes=10)
    assert value == pytest.approx(0.405, rel=5e-3)
    assert curve[0] == pytest.approx(1.0, abs=1e-3) and curve[-1] == 0 and len(r) == 1001
    # Everything defeated unperturbed.
    assert ara_from_radii(torch.zeros(5), num_classes=10)[0] == 0.0


def test_censored_images_count_as_right_and_do_not_stretch_the_curve() -> None:
    # Five images need 0.5, five are never defeated within the budget: A(r) = 1 until
    # 0.5, then 0.5; the curve ends at the largest radius found, so the area is
    # 0.5 · (1 − 0.1) = 0.45. Read as defeated at 0 they would give 0.5 · 0.4 = 0.2.
    radii = torch.cat([torch.full((5,), 0.5), torch.full((5,), float("nan"))])
    censored = torch.isnan(radii)
    value, r, curve = ara_from_radii(radii, num_classes=10, censored=censored)
    assert value == pytest.approx(0.45, rel=2e-3)
    assert float(r[-1]) == 0.5 and curve[0] == 1.0 and curve[-1] == 0.5
    assert ara_from_radii(torch.where(censored, 0.0, radii), 10)[0] == pytest.approx(0.2,
                                                                                  rel=5e-3)
    everything, _, curve = ara_from_radii(radii, 10, censored=torch.ones(10, dtype=torch.bool))
    assert everything == 0.0 and (curve == 1.0).all()


def test_evaluation_subset_is_the_seeded_permutation() -> None:
    expected = torch.randperm(10000, generator=torch.Generator().manual_seed(1776))[:7]
    assert torch.equal(evaluation_indices(10000, 7), expected)


@pytest.mark.parametrize("mode", ["l2min", "btr"])
def test_ara_on_a_tiny_network(mode: str, tiny: torch.nn.Module,
                               tiny_images: torch.Tensor) -> None:
    with torch.no_grad():
        logits = tiny(tiny_images)
    y = logits.argmax(1)
    y[0] = logits[0].argmin()  # one image already defeated: d = 0
    result = ara(tiny, tiny_images, y, mode=mode, eps=3.0, steps=60)
    assert result.radii[0] == 0 and (result.radii[1:] > 0).all()
    assert result.value > 0 and result.unsettled == 0
    assert result.accuracy == pytest.approx(5 / 6)
    value, _, _ = ara_from_radii(result.radii, 3)
    assert result.value == pytest.approx(value)


def test_btr_needs_at_least_the_attack_radius_on_two_classes(tiny: torch.nn.Module,
                                                               tiny_images: torch.Tensor) -> None:
    with torch.no_grad():
        y = tiny(tiny_images).argmax(1)
    attack = ara(tiny, tiny_images, y, mode="l2min", eps=3.0, steps=60)
    btr = ara(tiny, tiny_images, y, mode="btr", eps=3.0, steps=60)
    assert (btr.radii >= attack.radii * 0.8).all()


def test_too_small_a_budget_is_a_clear_error(tiny: torch.nn.Module,
                                             tiny_images: torch.Tensor) -> None:
    with torch.no_grad():
        y = tiny(tiny_images).argmax(1)
    with pytest.raises(SanityCheckError, match="raise eps"):
        ara(tiny, tiny_images, y, mode="l2min", eps=1e-3, steps=10)
    with pytest.raises(ValueError, match="ARA mode"):
        ara(tiny, tiny_images, y, mode="l2")
    with pytest.raises(ValueError, match="label 3 is out of range 0..2"):
        ara(tiny, tiny_images, torch.full((6,), 3), mode="btr")


def test_images_not_defeated_within_the_budget_are_censored(tiny: torch.nn.Module,
                                                            tiny_images: torch.Tensor) -> None:
    with torch.no_grad():
        logits = tiny(tiny_images)
    y = logits.argmax(1)
    y[0] = logits[0].argmin()  # already defeated: d = 0, not censored
    result = ara(tiny, tiny_images, y, mode="l2min", eps=1e-4, steps=5, strict=False)
    assert result.censored == 5 and result.unsettled == 5
    assert result.radii[0] == 0 and torch.isnan(result.radii[1:]).all()
    assert result.value == 0.0 and result.curve_accuracy[0] == pytest.approx(5 / 6)


@pytest.mark.needs_shared_data
def test_cli_evaluate_json_and_plot(reference_store: ModelStore, cifar_test_dir: Path,
                                    tmp_path: Path) -> None:
    plot = tmp_path / "curve.png"
    result = subprocess.run(
        [sys.executable, "-m", "aex.cli", "evaluate", "ref-robust", "--data", str(cifar_test_dir),
         "--n-images", "40", "--steps", "60", "--eps", "5", "--json", "--plot", str(plot),
         "--model-dir", str(reference_store.root)],
        capture_output=True, text=True, check=True,
    )
    report = json.loads(result.stdout)
    for key in ("ara_attack", "ara_btr"):  # progress bars on stderr, run to the end
        assert f"{key} on 40 images: 100%" in result.stderr
    assert report["n_images"] == 40 and 0.4 < report["accuracy"] < 0.9
    assert 0 < report["ara_attack"] < report["ara_btr"] < 0.2
    assert report["ara_attack_censored"] == report["ara_btr_censored"] == 0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    acc_only = subprocess.run(
        [sys.executable, "-m", "aex.cli", "evaluate", "ref-standard", "--data",
         str(cifar_test_dir), "--no-ara", "--json", "--model-dir", str(reference_store.root)],
        capture_output=True, text=True, check=True).stdout
    assert set(json.loads(acc_only)) >= {"accuracy", "n_images"}
    assert "ara_btr" not in json.loads(acc_only)


@pytest.mark.needs_shared_data
def test_save_metrics_keeps_the_training_keys(reference_checkpoint: Callable[[str], Path],
                                              cifar_test_dir: Path, tmp_path: Path) -> None:
    """Accuracy is saved only when measured on the whole folder; ARA with its image count."""
    data = tmp_path / "data"
    for cls in sorted(p.name for p in cifar_test_dir.iterdir() if p.is_dir()):
        (data / cls).mkdir(parents=True)
        for f in sorted((cifar_test_dir / cls).iterdir())[:3]:
            shutil.copy(f, data / cls / f.name)
    store = ModelStore(tmp_path / "registry", include_bundled=False)
    import_reference(reference_checkpoint("robust"), "robust", store=store)
    common = ["--data", str(data), "--model-dir", str(store.root), "--save-metrics", "--json"]
    assert main(["evaluate", "robust", "--n-images", "30", "--no-ara", *common]) == 0
    assert main(["evaluate", "robust", "--n-images", "12", "--steps", "60", "--eps", "5",
                 *common]) == 0
    metrics = ModelStore(store.root, include_bundled=False).get("robust").meta["metrics"]
    assert metrics["n_test"] == 30 and 0.3 < metrics["accuracy"] < 1
    assert metrics["accuracy"] * 30 == pytest.approx(round(metrics["accuracy"] * 30))
    assert metrics["ara_images"] == 12 and 0 < metrics["ara_attack"] < metrics["ara_btr"]
    assert metrics["ara_settings"]["steps"] == 60 and "n_images" not in metrics
    assert metrics["ara_attack_censored"] == metrics["ara_btr_censored"] == 0
    assert store.get("robust").ara_plot_path.read_bytes()[:4] == b"\x89PNG"
