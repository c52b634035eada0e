"""The Dockerfile, checked without a Docker engine: its structure, the files it copies, and
its install steps run here (the project wheel built and installed in a throwaway venv)."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
# Source folder -> where its files land in the wheel (the aex namespace, pyproject.toml).
PACKAGES = {"aex": "aex", "models": "aex/models", "service": "aex/service", "worker": "aex/worker"}


@dataclass
class Instruction:
    name: str
    args: str


def parse_dockerfile(path: Path = REPO_ROOT / "Dockerfile") -> list[list[Instruction]]:
    """Instructions grouped by stage; continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", "", path.read_text())
    stages: list[list[Instruction]] = [[]]
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, args = line.partition(" ")
        ins = Instruction(name.upper(), args.strip())
        if ins.name == "FROM":
            stages.append([])
        stages[-1].append(ins)
    return stages


def build_args(stages: list[list[Instruction]]) -> dict[str, str]:
    out = {}
    for ins in stages[0]:
        if ins.name == "ARG" and "=" in ins.args:
            key, value = ins.args.split("=", 1)
            out[key] = value
    return out


def wheel_step(stages: list[list[Instruction]]) -> tuple[list[Instruction], str]:
    """The build stage's COPY instructions and its RUN that builds and installs the wheel."""
    build = stages[1]
    copies = [i for i in build if i.name == "COPY" and not i.args.startswith("--from")]
    runs = [i.args for i in build if i.name == "RUN" and "pip wheel" in i.args]
    assert len(runs) == 1, "expected one RUN with `pip wheel` in the build stage"
    return copies, runs[0]


def make_context(copies: list[Instruction], dest: Path) -> Path:
    """Lay out what the build stage's COPY instructions put in WORKDIR (/src)."""
    ignored = [
        line.strip()
        for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for ins in copies:
        *sources, target = ins.args.split()
        for source in sources:
            assert not any(fnmatch.fnmatch(source, pat) for pat in ignored), (
                f"COPY {source}: excluded by .dockerignore"
            )
            src = REPO_ROOT / source
            assert src.exists(), f"COPY {source}: not in the repository"
            out = (
                dest
                / (target if target not in ("./", ".") else "")
                / (src.name if target.endswith("/") else "")
            )
            if src.is_dir():
                shutil.copytree(src, out, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, out)
    return dest


def run_steps(run: str, cwd: Path, venv: Path, wheels: Path) -> None:
    """Run a RUN line's `&&` steps in `venv`, with /wheels moved to `wheels`."""
    env = {**os.environ, "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    env["VIRTUAL_ENV"] = str(venv)
    env["PIP_NO_COMPILE"] = "1"  # skip .pyc for the thousands of torch files
    env.pop("PYTHONPATH", None)
    for step in run.split("&&"):
        step = step.strip().replace("/wheels", str(wheels))
        proc = subprocess.run(
            ["bash", "-c", step], cwd=cwd, env=env, capture_output=True, text=True, timeout=900
        )
        assert proc.returncode == 0, f"Dockerfile step failed: {step}\n{proc.stdout}\n{proc.stderr}"


def source_files(context: Path, package: str) -> set[str]:
    """The package's modules in a build context (a copy: the tree may change meanwhile),
    named as they are in the wheel."""
    return {
        f"{PACKAGES[package]}/{p.relative_to(context / package).as_posix()}"
        for p in (context / package).rglob("*.py")
        if "__pycache__" not in p.parts
    }


def default_model_files(context: Path) -> set[str]:
    """The bundled model's files, named as they are in the wheel."""
    root = context / "models" / "default"
    return {f"aex/models/default/{p.name}" for p in root.glob("*") if p.is_file()}


# --- structure --------------------------------------------------------------------------


def test_stages_base_image_and_user() -> None:
    stages = parse_dockerfile()
    froms = [s[0].args for s in stages[1:]]
    assert len(froms) >= 2, "multi-stage: a build stage and a runtime stage"
    image = build_args(stages).get("PYTHON_IMAGE", "")
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", image), image
    runtime = stages[-1]
    assert any(i.name == "COPY" and i.args.startswith("--from=build") for i in runtime)
    users = [i.args for i in runtime if i.name == "USER"]
    assert users and users[-1] not in ("root", "0"), "the runtime stage must run as non-root"


def test_torch_variant() -> None:
    stages = parse_dockerfile()
    build = stages[1]
    assert any(i.name == "ARG" and i.args == "TORCH_VARIANT=cpu" for i in build)
    torch_run = [i.args for i in build if i.name == "RUN" and "torch==" in i.args]
    assert torch_run and "download.pytorch.org/whl/$TORCH_VARIANT" in torch_run[0]
    assert "torch==2.14.1" in torch_run[0] and "torchvision==0.29.1" in torch_run[0]


def test_healthcheck_port_and_command(check_app_target: Callable[[list[str]], None]) -> None:
    runtime = parse_dockerfile()[-1]
    health = [i.args for i in runtime if i.name == "HEALTHCHECK"]
    assert health and "/healthz" in health[0] and "8000" in health[0]
    assert any(i.name == "EXPOSE" and "8000" in i.args for i in runtime)
    cmd = [i.args for i in runtime if i.name == "CMD"]
    assert cmd, "no CMD"
    words = json.loads(cmd[-1])
    assert words[0] == "uvicorn", words
    check_app_target(words)


def test_copied_sources_exist(tmp_path: Path) -> None:
    copies, _ = wheel_step(parse_dockerfile())
    context = make_context(copies, tmp_path)
    for package in PACKAGES:
        assert (context / package).is_dir(), f"the image does not get {package}/"
    assert (context / "pyproject.toml").is_file()


# --- the install steps --------------------------------------------------------------------


@pytest.fixture(scope="module")
def built_wheel(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The Dockerfile's `pip wheel --no-deps --wheel-dir /wheels .`, in a copy of its context."""
    copies, run = wheel_step(parse_dockerfile())
    tmp = tmp_path_factory.mktemp("docker-wheel")
    context = make_context(copies, tmp / "src")
    wheels = tmp / "wheels"
    step = next(s for s in run.split("&&") if "pip wheel" in s).strip()
    step = step.replace("/wheels", str(wheels)).replace("pip ", f"{sys.executable} -m pip ", 1)
    proc = subprocess.run(
        ["bash", "-c", step], cwd=context, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, f"{step}\n{proc.stdout}\n{proc.stderr}"
    (wheel,) = wheels.glob("aex-*.whl")
    return wheel, context


def test_wheel_has_packages_and_entry_point(built_wheel: tuple[Path, Path]) -> None:
    wheel, context = built_wheel
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        text = zf.read(entry_points).decode()
    assert re.search(r"^aex\s*=\s*aex\.cli:main$", text, re.M), text
    for package in PACKAGES:
        if (context / package / "__init__.py").exists():
            missing = source_files(context, package) - names
            assert not missing, f"not in the wheel: {sorted(missing)}"


def test_wheel_has_default_model(built_wheel: tuple[Path, Path]) -> None:
    wheel, context = built_wheel
    expected = default_model_files(context)
    assert {Path(name).suffix for name in expected} >= {".json", ".safetensors", ".png"}
    with zipfile.ZipFile(wheel) as zf:
        missing = expected - set(zf.namelist())
    assert not missing, f"default model files not packaged (package-data): {sorted(missing)}"


@pytest.mark.slow
def test_image_install_steps(tmp_path: Path) -> None:
    """The build stage's wheel RUN line, step by step, in a fresh venv (about 1-2 min).

    torch comes from the pip configuration of this machine (same pinned versions) instead of
    the Docker build's PyTorch index, which this machine cannot reach.
    """
    copies, run = wheel_step(parse_dockerfile())
    context = make_context(copies, tmp_path / "src")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    try:
        run_steps(run, context, venv, tmp_path / "wheels")
        # The installed project is the wheel's, not this checkout.
        proc = subprocess.run(
            [str(venv / "bin" / "python"), "-c", "import aex.models; print(aex.models.__file__)"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        assert proc.stdout.strip().startswith(str(venv)), proc.stdout
    finally:
        shutil.rmtree(venv, ignore_errors=True)  # several GB; pytest keeps old tmp dirs
