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
    """Instructions grouped by stage (index 0: before the first FROM); continuation lines
    joined, comments dropped."""
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


def stage(stages: list[list[Instruction]], name: str) -> list[Instruction]:
    """The stage ``FROM ... AS name``."""
    for instructions in stages[1:]:
        if re.search(rf"\s+AS\s+{re.escape(name)}$", instructions[0].args, re.I):
            return instructions
    raise AssertionError(f"the Dockerfile has no stage named {name!r}")


def wheel_step(stages: list[list[Instruction]]) -> tuple[list[Instruction], str]:
    """The wheel stage's COPY instructions and its RUN that builds the wheel."""
    build = stage(stages, "wheel")
    copies = [i for i in build if i.name == "COPY" and not i.args.startswith("--from")]
    runs = [i.args for i in build if i.name == "RUN" and "pip wheel" in i.args]
    assert len(runs) == 1, "expected one RUN with `pip wheel` in the wheel stage"
    return copies, runs[0]


def install_step(stages: list[list[Instruction]], name: str) -> str:
    """The RUN of stage ``name`` that installs the project's wheel with its extra."""
    runs = [i.args for i in stage(stages, name) if i.name == "RUN" and "aex-*.whl" in i.args]
    assert len(runs) == 1, f"expected one RUN installing the wheel in stage {name}"
    return runs[0]


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


def test_two_images_base_image_and_user() -> None:
    stages = parse_dockerfile()
    image = build_args(stages).get("PYTHON_IMAGE", "")
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", image), image
    for name, build in (("api", "api-build"), ("worker", "worker-build")):
        final = stage(stages, name)
        assert any(i.name == "COPY" and i.args.startswith(f"--from={build} ") for i in final)
        users = [i.args for i in final if i.name == "USER"]
        assert users and users[-1] not in ("root", "0"), f"{name} must run as non-root"
    assert stages[-1] is stage(stages, "api"), "the default target is the API image"


def test_api_image_has_no_torch_and_worker_image_has_the_variant() -> None:
    stages = parse_dockerfile()
    api = stage(stages, "api-build")
    assert not any("torch" in i.args and "pip install" in i.args and "import torch" not in i.args
                   for i in api if i.name == "RUN")
    assert "[api]" in install_step(stages, "api-build")
    assert "requirements.lock" in install_step(stages, "api-build")
    worker = stage(stages, "worker-build")
    assert any(i.name == "ARG" and i.args == "TORCH_VARIANT=cpu" for i in worker)
    torch_run = [i.args for i in worker if i.name == "RUN" and "torch torchvision" in i.args]
    assert torch_run and "download.pytorch.org/whl/$TORCH_VARIANT" in torch_run[0]
    assert "-c /wheels/requirements.lock" in torch_run[0]
    assert "[worker]" in install_step(stages, "worker-build")
    assert json.loads([i.args for i in stage(stages, "worker") if i.name == "CMD"][-1]) == [
        "aex", "worker"]


def test_healthcheck_port_and_command(check_app_target: Callable[[list[str]], None]) -> None:
    api = stage(parse_dockerfile(), "api")
    health = [i.args for i in api if i.name == "HEALTHCHECK"]
    assert health and "/healthz" in health[0] and "8000" in health[0]
    assert any(i.name == "EXPOSE" and "8000" in i.args for i in api)
    cmd = [i.args for i in api if i.name == "CMD"]
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


def test_wheel_has_the_web_page_and_its_examples(built_wheel: tuple[Path, Path]) -> None:
    wheel, context = built_wheel
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    static = context / "service" / "static"
    files = {f"aex/service/static/{p.relative_to(static).as_posix()}"
             for p in static.rglob("*") if p.is_file()}
    assert any(name.endswith("examples/cat.jpg") for name in files)
    assert files <= names, f"not in the wheel: {sorted(files - names)}"


def test_wheel_has_default_model(built_wheel: tuple[Path, Path]) -> None:
    wheel, context = built_wheel
    expected = default_model_files(context)
    assert {Path(name).suffix for name in expected} >= {".json", ".safetensors", ".png"}
    with zipfile.ZipFile(wheel) as zf:
        missing = expected - set(zf.namelist())
    assert not missing, f"default model files not packaged (package-data): {sorted(missing)}"


def test_api_image_install_is_torch_free(built_wheel: tuple[Path, Path],
                                          tmp_path: Path) -> None:
    """The API stage's install RUN, step by step, in a fresh venv: the project's wheel with
    the `api` extra pinned by requirements.lock, and no torch (about 30 s)."""
    wheel, context = built_wheel
    run = install_step(parse_dockerfile(), "api-build")
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    shutil.copy2(wheel, wheels)
    shutil.copy2(context / "requirements.lock", wheels)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    run_steps(run, tmp_path, venv, wheels)
    python = str(venv / "bin" / "python")
    # The installed project is the wheel's, not this checkout.
    proc = subprocess.run([python, "-c", "import aex.service.app as a; print(a.__file__)"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120, check=True)
    assert proc.stdout.strip().startswith(str(venv)), proc.stdout
    assert subprocess.run([python, "-c", "import torch"], cwd=tmp_path,
                          capture_output=True, timeout=60).returncode != 0
