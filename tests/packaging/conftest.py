"""Helpers for the packaging tests."""

from __future__ import annotations

import importlib
import inspect
import re
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "utils"))

from aex_service_testing import model_dir, redis_db, redis_url  # noqa: E402,F401


def _check_app_target(words: list[str]) -> None:
    """The `module:attribute` in a uvicorn command exists, with --factory for a factory."""
    targets = [w for w in words if re.fullmatch(r"[\w.]+:\w+", w)]
    assert len(targets) == 1, f"no single module:attribute in {words}"
    module_name, attr = targets[0].split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        pytest.skip(f"{module_name} does not import yet: {exc}")
    assert hasattr(module, attr), f"uvicorn target {targets[0]} does not exist"
    if "--factory" in words:
        assert callable(getattr(module, attr)), f"{targets[0]} is not callable"
    else:
        assert not inspect.isfunction(getattr(module, attr)), (
            f"{targets[0]} is a function: give uvicorn --factory"
        )


@pytest.fixture
def check_app_target() -> Callable[[list[str]], None]:
    return _check_app_target
