"""Fixtures for the science tests: tiny deterministic networks and the reference models."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from aex.models import HalfHuberReLU, ImageSet, ModelStore, import_reference, load_image_folder


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


class TinyNet(torch.nn.Module):
    """A small smooth CNN on 16×16 images, 3 classes, normalising inside like ours."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("input_offset", torch.tensor([[0.5] * 3, [0.25] * 3]))
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), HalfHuberReLU(),
            torch.nn.Conv2d(8, 8, 3, padding=1, stride=2), torch.nn.BatchNorm2d(8),
            HalfHuberReLU(),
        )
        self.head = torch.nn.Linear(8, 3)

    @property
    def feature_layer(self) -> torch.nn.Module:
        return self.features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.input_offset[0].view(1, -1, 1, 1)) / self.input_offset[1].view(1, -1, 1, 1)
        return self.head(self.features(x).mean((2, 3)))


def tiny_model(seed: int = 0) -> torch.nn.Module:
    """A deterministic :class:`TinyNet` in eval mode with non-trivial BN statistics."""
    torch.manual_seed(seed)
    model = TinyNet()
    with torch.no_grad():
        model.train()
        model(torch.rand(64, 3, 16, 16))
    return model.eval()


@pytest.fixture
def tiny() -> torch.nn.Module:
    return tiny_model()


@pytest.fixture
def tiny_images() -> torch.Tensor:
    return torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="session")
def cifar_test(cifar_test_dir: Path) -> ImageSet:
    """All 10,000 CIFAR-10 JPEG test images, decoded."""
    return load_image_folder(cifar_test_dir)


@pytest.fixture(scope="session")
def reference_store(tmp_path_factory: pytest.TempPathFactory,
                    reference_checkpoint: Callable[[str], Path]) -> ModelStore:
    """A registry holding the four reference checkpoints, imported as ``ref-<name>``."""
    store = ModelStore(tmp_path_factory.mktemp("reference-registry"), include_bundled=False)
    for name in ("standard", "adv-train", "robust", "all"):
        import_reference(reference_checkpoint(name), f"ref-{name}", store=store)
    return store
