"""What a test does when something it needs is absent: skip it, or fail under ``CI=true``.

CI installs everything (Chromium, the shared data folder), so there a missing piece is a
broken set-up that a skip would hide; on a developer's clone it is a skip with the reason.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def in_ci() -> bool:
    """Whether the ``CI`` environment variable says this is a CI run."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def missing(reason: str) -> NoReturn:
    """Skip (the test or, at import time, its module) for ``reason``; fail under CI."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: a CI run must have it, so this fails instead of "
                    "skipping)", pytrace=False)
    pytest.skip(reason, allow_module_level=True)
