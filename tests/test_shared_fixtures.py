"""The top-level conftest's fixtures for the shared data folder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

REFERENCE_NAMES = ("standard", "adv-train", "robust", "all")


@pytest.mark.needs_shared_data
def test_cifar_test_dir_is_an_image_folder(cifar_test_dir: Path) -> None:
    classes = sorted(p.name for p in cifar_test_dir.iterdir() if p.is_dir())
    assert len(classes) == 10 and "airplane" in classes
    assert next((cifar_test_dir / "airplane").glob("*.jpg"), None) is not None


@pytest.mark.needs_shared_data
def test_reference_checkpoints(reference_checkpoint: Callable[[str], Path]) -> None:
    for name in REFERENCE_NAMES:
        assert reference_checkpoint(name).name == f"resnet44-{name}.pt"
    with pytest.raises(ValueError):
        reference_checkpoint("nonexistent")
