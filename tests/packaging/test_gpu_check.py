"""bench/gpu_check.py: its CPU dry run exercises the same plumbing as the GPU check."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_dry_run_passes_every_check_on_the_cpu(tmp_path: Path) -> None:
    # torchrun with a one-process gloo group, `aex serve` with a real worker, `aex evaluate`.
    env = {**os.environ, "AEX_MODEL_DIR": str(tmp_path / "registry")}
    done = subprocess.run([sys.executable, str(REPO_ROOT / "bench" / "gpu_check.py"),
                           "--device", "cpu"], capture_output=True, text=True, timeout=600,
                          env=env, cwd=tmp_path)
    lines = done.stdout.splitlines()
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    assert [line.split()[:2] for line in lines] == [
        ["ok", "train"], ["skip", "train"], ["ok", "explain"], ["ok", "ara"]]
    assert "worker on cpu" in lines[2] and "censored" in lines[3]


def test_the_gpu_check_refuses_to_pass_without_a_gpu() -> None:
    # No GPU here: the real check must fail (one line, non-zero), never report success.
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([sys.executable, str(REPO_ROOT / "bench" / "gpu_check.py")],
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 1
    assert done.stdout.startswith("FAIL  cuda: no CUDA device is visible")
