"""The paper's published checkpoints, imported safely, reproduce their accuracies."""

import json
import math
import pickle
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from aex.models import ImageSet, ModelStore, evaluate_accuracy, evaluation_indices, load_checkpoint
from aex.models.data import ImageSet as _ImageSet
from aex.models.reference import read_reference

# Accuracy of the reference model code on all 10,000 JPEG test images (reference README).
JPEG_ACCURACY = {"standard": 0.8250, "adv-train": 0.8533, "robust": 0.6664, "all": 0.6681}


def _subset(data: ImageSet, n: int) -> ImageSet:
    idx = evaluation_indices(len(data), n)
    return _ImageSet(data.images[idx], data.labels[idx], data.classes)


@pytest.mark.needs_shared_data
@pytest.mark.parametrize("name", sorted(JPEG_ACCURACY))
def test_seeded_subset_accuracy_matches_the_reference(
        name: str, reference_store: ModelStore, cifar_test: ImageSet) -> None:
    n, total = 1000, len(cifar_test)
    p = JPEG_ACCURACY[name]
    # Sampling error of a 1,000-of-10,000 subset (finite-population corrected), 3.5 sigma.
    tolerance = 3.5 * math.sqrt(p * (1 - p) / n * (total - n) / (total - 1))
    model = load_checkpoint(f"ref-{name}", store=reference_store).model
    accuracy = evaluate_accuracy(model, _subset(cifar_test, n))
    assert abs(accuracy - p) <= tolerance, (accuracy, p, tolerance)


@pytest.mark.needs_shared_data
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(JPEG_ACCURACY))
def test_full_test_set_accuracy_within_0_003(
        name: str, reference_store: ModelStore, cifar_test: ImageSet) -> None:
    model = load_checkpoint(f"ref-{name}", store=reference_store).model
    assert abs(evaluate_accuracy(model, cifar_test) - JPEG_ACCURACY[name]) <= 0.003


@pytest.mark.needs_shared_data
def test_imported_metadata(reference_store: ModelStore) -> None:
    robust = reference_store.get("ref-robust").meta
    assert robust["arch_kwargs"]["act"] == "hhrelu" and robust["arch_kwargs"]["depth"] == 44
    assert robust["training"]["robust"] is True
    assert robust["training"]["robust_integration"] == pytest.approx(251.697, abs=1e-3)
    assert robust["classes"][3] == "cat" and robust["input_size"] == [32, 32]
    assert reference_store.get("ref-standard").meta["arch_kwargs"]["act"] == "relu"
    assert reference_store.get("ref-all").meta["training"]["adversarial"] == "l2min"
    assert reference_store.get("ref-adv-train").meta["training"]["adversarial"] == "l2"


class _Evil:
    def __reduce__(self) -> tuple[Callable[..., object], tuple[str]]:
        return (print, ("pwned",))


@pytest.mark.needs_shared_data
def test_a_file_with_another_pickle_global_is_refused(tmp_path: Path,
                                                      reference_checkpoint: Callable[[str], Path]
                                                      ) -> None:
    state, _ = read_reference(reference_checkpoint("standard"))
    evil = tmp_path / "evil.pt"
    torch.save({"model_params": state, "training_options": {"x": _Evil()}}, evil,
               _use_new_zipfile_serialization=False, pickle_protocol=2)
    with pytest.raises(ValueError, match="refusing to import .*GLOBAL print"):
        read_reference(evil)


def test_not_a_checkpoint_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pt"
    torch.save([1, 2, 3], junk)
    with pytest.raises(ValueError, match="lacks 'model_params'"):
        read_reference(junk)
    junk.write_bytes(pickle.dumps({"a": 1}, protocol=4) + b"garbage")
    with pytest.raises(ValueError, match="not a readable reference checkpoint"):
        read_reference(junk)
    with pytest.raises(ValueError, match="does not exist"):
        read_reference(tmp_path / "missing.pt")


@pytest.mark.needs_shared_data
def test_cli_import_reference(tmp_path: Path, reference_checkpoint: Callable[[str], Path]) -> None:
    cmd = [sys.executable, "-m", "aex.cli", "models", "import-reference",
           str(reference_checkpoint("robust")), "--name", "paper-robust", "--model-dir",
           str(tmp_path)]
    subprocess.run(cmd, check=True, capture_output=True)
    listed = subprocess.run(
        [sys.executable, "-m", "aex.cli", "models", "list", "--json", "--model-dir", str(tmp_path)],
        check=True, capture_output=True, text=True).stdout
    assert "paper-robust" in [e["name"] for e in json.loads(listed)]
    bad = subprocess.run(cmd[:-4] + ["--name", "../x", "--model-dir", str(tmp_path)],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "invalid model name" in bad.stderr
