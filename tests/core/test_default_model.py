"""The bundled default model (models/default/): found as ``default`` on a fresh install,
its metadata records how it was made and what it measured, and it lives up to it."""

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from aex.models import (
    AdversarialExplainer,
    ImageSet,
    ModelStore,
    evaluate_accuracy,
    evaluation_indices,
    load_checkpoint,
)
from aex.models.store import BUNDLED_DIR, CheckpointEntry

Bundled = tuple[ModelStore, CheckpointEntry]


@pytest.fixture(scope="module")
def bundled(tmp_path_factory: pytest.TempPathFactory) -> Bundled:
    """The default model as an empty registry sees it (only what the package ships)."""
    store = ModelStore(tmp_path_factory.mktemp("empty-registry"))
    entry = store.get("default")
    return store, entry


def test_default_alias_is_the_bundled_robust_network(bundled: Bundled) -> None:
    store, entry = bundled
    assert entry.bundled and entry.meta_path.parent == BUNDLED_DIR
    training = entry.meta["training"]
    assert training["robust"] and training["act"] == "hhrelu"
    assert training["command"].startswith("aex train ") and "--robust" in training["command"]
    assert training["train_images"] == 50_000 and training["train_seconds"] > 0
    assert training["epochs_done"] == training["epochs"]
    loaded = load_checkpoint("default", store=store)  # checks the sha256
    assert loaded.name == entry.name and len(loaded.classes) == 10


def test_recorded_figures_meet_the_targets(bundled: Bundled) -> None:
    metrics = bundled[1].meta["metrics"]
    assert metrics["n_test"] == 10_000 and metrics["accuracy"] >= 0.55
    assert metrics["ara_images"] == 1000
    assert 0 < metrics["ara_attack"] < metrics["ara_btr"] and metrics["ara_btr"] >= 0.02
    assert metrics["ara_settings"]["steps"] == 450 and metrics["ara_settings"]["eps"] == 20
    assert (BUNDLED_DIR / f"{bundled[1].name}.ara.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.needs_shared_data
def test_accuracy_on_a_seeded_subset_agrees_with_the_metadata(
        bundled: Bundled, cifar_test: ImageSet) -> None:
    store, entry = bundled
    loaded = load_checkpoint("default", store=store)
    idx = evaluation_indices(len(cifar_test), 1000)
    subset = ImageSet(cifar_test.images[idx], cifar_test.labels[idx], cifar_test.classes)
    recorded = entry.meta["metrics"]["accuracy"]
    # sampling 1,000 of the 10,000 without replacement: finite-population corrected σ
    sigma = math.sqrt(recorded * (1 - recorded) / 1000 * (10_000 - 1000) / (10_000 - 1))
    assert abs(evaluate_accuracy(loaded.model, subset) - recorded) < 3.5 * sigma


@pytest.mark.needs_shared_data
def test_explanations_raise_each_target_class(bundled: Bundled, cifar_test: ImageSet) -> None:
    loaded = load_checkpoint("default", store=bundled[0])
    idx = evaluation_indices(len(cifar_test), 6)
    e = AdversarialExplainer(loaded.model, loaded.classes).explain(
        cifar_test.floats(idx), targets="all", rho=0.1, steps=35)
    assert len(e.prob_after) == 60
    assert (e.prob_after > e.prob_before).float().mean() >= 0.95
    # the change is visible: a tenth of the pixel range, RMS
    assert torch.all(e.perturbation_rms > 0.05)


@pytest.mark.needs_shared_data
def test_aex_evaluate_default_works_on_a_fresh_install(cifar_test_dir: Path,
                                                       tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "aex.cli", "evaluate", "default", "--data", str(cifar_test_dir),
         "--n-images", "200", "--no-ara", "--json", "--model-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert '"n_images": 200' in result.stdout and '"model": "aex-cifar10-r20"' in result.stdout
