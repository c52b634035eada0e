"""Fixtures of the web-page tests (shared with tests/service through tests/utils)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "utils"))

from aex_service_testing import model_dir, redis_db, redis_url  # noqa: E402,F401
