"""``aex explain``: explanations of image files through the command line, on real images."""

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from aex.cli import main
from aex.models import ModelStore

pytestmark = pytest.mark.needs_shared_data


def _images(cifar_test_dir: Path) -> list[str]:
    return [str(sorted((cifar_test_dir / cls).iterdir())[0]) for cls in ("cat", "ship")]


def test_explain_writes_a_grid_and_reports_each_target(
        reference_store: ModelStore, cifar_test_dir: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    grid = tmp_path / "grid.png"
    code = main(["explain", "ref-robust", *_images(cifar_test_dir), "--targets", "deer,1",
                 "--steps", "20", "--out", str(grid), "--json",
                 "--model-dir", str(reference_store.root)])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["model"] == "ref-robust" and report["grid"] == str(grid)
    assert [item["image"] for item in report["images"]] == _images(cifar_test_dir)
    for item in report["images"]:
        assert item["resized"] is False
        assert [t["class"] for t in item["targets"]] == ["deer", "automobile"]
        for t in item["targets"]:
            assert t["probability_after"] > t["probability_before"]
            # ρ is a soft budget: the step that crosses it is kept (method.md §3)
            assert 0.09 < t["perturbation_rms"] < 0.1 * 1.25
    with Image.open(io.BytesIO(grid.read_bytes())) as png:
        # two rows (one per image) of three 128-pixel tiles: input, deer, automobile
        assert png.format == "PNG" and png.size == (3 * 132 + 4, 2 * (128 + 14 + 4) + 4)


def test_explain_prints_a_readable_report(reference_store: ModelStore, cifar_test_dir: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    image = _images(cifar_test_dir)[1]
    code = main(["explain", "ref-robust", image, "--targets", "predicted", "--steps", "10",
                 "--model-dir", str(reference_store.root)])
    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith(f"{image}: ") and "  toward " in out and "change RMS" in out


@pytest.mark.parametrize(("setup", "message"), [
    ("text", "is not a PNG, JPEG or WebP image"),
    ("missing", "No such file"),
    ("class", "unknown class 'zebra'"),
    ("model", "unknown model 'nope'"),
])
def test_bad_input_is_a_one_line_error(setup: str, message: str, reference_store: ModelStore,
                                       cifar_test_dir: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    image = _images(cifar_test_dir)[0]
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")
    args = {
        "text": ["ref-robust", str(notes)],
        "missing": ["ref-robust", str(tmp_path / "absent.jpg")],
        "class": ["ref-robust", image, "--targets", "zebra"],
        "model": ["nope", image],
    }[setup]
    code = main(["explain", *args, "--steps", "5", "--model-dir", str(reference_store.root)])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1
