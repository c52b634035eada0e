"""Fixtures shared by the whole suite: the shared data folder and its extracted datasets.

``AEX_SHARED_DIR`` (default ``<repo>/../shared``) holds the CIFAR-10 JPEG archives and the
paper's reference checkpoints. Tests marked ``needs_shared_data`` are skipped when it is
absent; the fixtures below skip the same way. Under ``CI=true`` they fail instead
(``aex_missing``): CI has the folder, so its absence is a broken set-up. Archives are
extracted once into ``$AEX_CACHE_DIR/data`` (default ``<repo>/.cache/data``, ignored by
git).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "utils"))

from aex_missing import in_ci, missing  # noqa: E402

# One math thread per process: the suite runs several processes (API, workers, pytest)
# on two cores, and oversubscribed OpenMP threads slow torch down by an order of magnitude.
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO_ROOT = Path(__file__).resolve().parent.parent
REFERENCE_NAMES = ("standard", "adv-train", "robust", "all")


def _shared_dir() -> Path:
    return Path(os.environ.get("AEX_SHARED_DIR") or REPO_ROOT.parent / "shared").resolve()


def _cache_dir() -> Path:
    return Path(os.environ.get("AEX_CACHE_DIR") or REPO_ROOT / ".cache").resolve()


def pytest_report_header(config: pytest.Config) -> str:
    """Which Redis the service tests use (never one they did not start unless told)."""
    given = os.environ.get("AEX_TEST_REDIS_URL")
    if given:
        from aex.contract.connection import mask_url

        return f"redis: AEX_TEST_REDIS_URL={mask_url(given)} (an empty database, flushed)"
    return "redis: a private redis-server on a free port, started for this session"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("AEX_EXHAUSTIVE_TESTS") != "1":
        opt_in = pytest.mark.skip(reason="exhaustive: set AEX_EXHAUSTIVE_TESTS=1 to run it "
                                         "(minutes to tens of minutes on 2 cores)")
        for item in items:
            if "exhaustive" in item.keywords:
                item.add_marker(opt_in)
    shared = _shared_dir()
    if shared.is_dir() or in_ci():  # under CI the tests run, and their fixtures fail
        return
    skip = pytest.mark.skip(reason=f"shared data folder {shared} is absent (set AEX_SHARED_DIR)")
    for item in items:
        if "needs_shared_data" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``AEX_SHARED_DIR`` (default ``<repo>/../shared``); skips when it is absent."""
    path = _shared_dir()
    if not path.is_dir():
        missing(f"shared data folder {path} is absent (set AEX_SHARED_DIR)")
    return path


def _extracted(shared: Path, split: str) -> Path:
    from aex.models.data import extract_tar

    archive = shared / "datasets" / "cifar10-jpeg" / f"{split}.tar.gz"
    if not archive.is_file():
        missing(f"{archive} is absent")
    return extract_tar(archive, _cache_dir() / "data") / split


@pytest.fixture(scope="session")
def cifar_test_dir(shared_dir: Path) -> Path:
    """The CIFAR-10 test split as an ImageFolder tree: ``<dir>/<class>/*.jpg``."""
    return _extracted(shared_dir, "test")


@pytest.fixture(scope="session")
def cifar_train_dir(shared_dir: Path) -> Path:
    """The CIFAR-10 train split as an ImageFolder tree: ``<dir>/<class>/*.jpg``."""
    return _extracted(shared_dir, "train")


@pytest.fixture(scope="session")
def reference_checkpoint(shared_dir: Path) -> Callable[[str], Path]:
    """``reference_checkpoint("robust")`` -> the paper's ``resnet44-robust.pt``; skips if absent."""

    def path(name: str) -> Path:
        if name not in REFERENCE_NAMES:
            raise ValueError(f"unknown reference checkpoint {name!r}; one of {REFERENCE_NAMES}")
        file = shared_dir / "checkpoints" / "reference" / f"resnet44-{name}.pt"
        if not file.is_file():
            missing(f"reference checkpoint {file} is absent")
        return file

    return path
