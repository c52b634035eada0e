"""``aex benchmark-explainers`` end to end on a tiny registry model and an ImageFolder tree:
the report, its files, resuming from the saved records, the figures in the metadata."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from aex.cli import main
from aex.models import ModelStore, create_model, save_checkpoint
from aex.models.quality import BASELINE
from aex.service.cards import model_card

CLASSES = ["cat", "dog", "ship"]


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    kwargs = {"act": "hhrelu", "num_classes": 3, "widths": [4, 8, 8], "input_size": 32,
              "mean": [0.5] * 3, "std": [0.25] * 3}
    root = tmp_path / "models"
    save_checkpoint(create_model("resnet20", **kwargs), "tiny", arch="resnet20",
                    arch_kwargs=kwargs, classes=CLASSES,
                    store=ModelStore(root, include_bundled=False))
    return root


@pytest.fixture
def data(tmp_path: Path) -> Path:
    generator = torch.Generator().manual_seed(0)
    for cls in CLASSES:
        (tmp_path / "data" / cls).mkdir(parents=True)
        for n in range(2):
            pixels = torch.randint(0, 256, (32, 32, 3), generator=generator, dtype=torch.uint8)
            Image.fromarray(pixels.numpy()).save(tmp_path / "data" / cls / f"{n}.png")
    return tmp_path / "data"


def _run(registry: Path, data: Path, out: Path, *extra: str) -> list[str]:
    """The command on 4 images in chunks of 2, cheap settings, adversarial and Grad-CAM
    unless told (every method runs in tests/core/test_quality.py)."""
    methods = [] if "--methods" in extra else ["--methods", "adversarial", "gradcam"]
    return ["benchmark-explainers", "tiny", "--model-dir", str(registry), "--data", str(data),
            *methods, "--n-images", "4", "--chunk-size", "2", "--sanity-images", "2",
            "--sensitivity-images", "2", "--sensitivity-samples", "2",
            "--infidelity-samples", "2", "--no-progress", "--out", str(out), "--json", *extra]


def test_benchmark_report_files_resume_and_metadata(
        registry: Path, data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "report"
    assert main(_run(registry, data, out, "--save-metrics")) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["model"] == "tiny" and report["n_images"] == 4
    assert report["methods"] == ["adversarial", "gradcam", BASELINE]
    assert report["resumed_chunks"] == 0
    rows = report["rows"]
    assert set(rows) == {"adversarial", "gradcam", BASELINE}
    assert all(row["n_images"] == 4 for row in rows.values())
    assert rows["gradcam"]["max_sensitivity_images"] == 2
    assert rows["adversarial"]["counterfactual"]["n_pairs"] == 4
    assert rows["gradcam"]["randomisation"]["n_images"] == 2
    assert report["settings"]["evaluation_seed"] == 1776
    assert json.loads((out / "report.json").read_text())["rows"] == rows
    assert (out / "report.md").read_text().count("\n| ") == len(rows) + 2
    assert (out / "curves.png").read_bytes().startswith(b"\x89PNG")
    # a rerun with the same settings reuses every saved chunk and gives the same table
    assert main(_run(registry, data, out)) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["resumed_chunks"] == len(rows) * 2
    for method, row in rows.items():
        assert again["rows"][method]["deletion_area"] == row["deletion_area"]
    # other settings are not reused
    assert main(_run(registry, data, out, "--replacement", "noise", "--methods", "saliency")) == 0
    assert json.loads(capsys.readouterr().out)["resumed_chunks"] == 0
    # the metadata and the card hold the figures with their settings and image count
    entry = ModelStore(registry, include_bundled=False).get("tiny")
    saved = entry.meta["metrics"]["explainers"]
    assert saved["n_images"] == 4 and saved["settings"]["replacement"] == "blur"
    assert saved["methods"]["adversarial"]["deletion_area"] == rows["adversarial"][
        "deletion_area"]
    assert model_card(entry)["quality"]["explainers"] == saved


def test_unknown_data_classes_are_a_clear_error(
        registry: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "other" / "zebra").mkdir(parents=True)
    Image.new("RGB", (32, 32)).save(tmp_path / "other" / "zebra" / "0.png")
    assert main(_run(registry, tmp_path / "other", tmp_path / "r")) == 2
    assert "differ from the model's" in capsys.readouterr().err
