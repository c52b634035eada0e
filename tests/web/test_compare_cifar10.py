"""The paper's argument on one screen, with real networks: the compare view on a CIFAR-10 test
image, the authors' published standard ResNet-44 (imported with the alias ``standard``) beside
the bundled robust default, through a real API and worker. Its screenshot,
``test-artifacts/screenshots/compare-cifar10.png``, is the picture the README opens with
(``docs/img/compare-cifar10.png``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aex_missing import missing
from aex_service_testing import service_stack
from aex_web_testing import CHROMIUM, chromium, compare_result, loaded_images, screenshot, upload

if not CHROMIUM.is_file():
    missing(f"{CHROMIUM} is absent (apt-get install chromium); the browser tests need it")
pytest.importorskip(
    "playwright.sync_api", reason="the playwright Python package is absent (pip install '.[dev]')")

IMAGE = "frog/0922.jpg"  # the third test image of the seeded evaluation order


@pytest.mark.slow
@pytest.mark.needs_shared_data
def test_standard_and_robust_side_by_side(
        redis_url: str, cifar_test_dir: Path, reference_checkpoint: Any,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    from aex.models import ModelStore, import_reference

    registry = tmp_path_factory.mktemp("cifar10-registry")
    import_reference(reference_checkpoint("standard"), "paper-standard",
                     store=ModelStore(registry), aliases=["standard"])
    logs = tmp_path_factory.mktemp("cifar10-logs")
    with service_stack(redis_url, registry, logs, preload=("paper-standard", "default")) as stack, \
            chromium() as browser:
        url = stack["url"]
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(20_000)
        page.goto(f"{url}/")
        page.wait_for_selector("#compare-model-b option[value=aex-cifar10-r20]", state="attached")
        assert page.input_value("#compare-model-a") == "paper-standard"
        assert page.input_value("#compare-model-b") == "aex-cifar10-r20"
        upload(page, "#compare-image", "frog.jpg", (cifar_test_dir / IMAGE).read_bytes(),
               "image/jpeg")
        page.click("#compare-submit")
        standard, robust = compare_result(page, url, timeout_ms=600_000)["columns"]
        assert len(loaded_images(page, "#compare-result img.pic-img")) == 2 * 9
        screenshot(page, "compare-cifar10")
    assert (standard["model"], robust["model"]) == ("paper-standard", "aex-cifar10-r20")
    # what the captions state, measured on this image: the standard network's answer flips
    # with a change no one sees, the robust network's only with a far larger one
    assert standard["attack"]["success"] and robust["attack"]["success"]
    assert standard["attack"]["size"]["visibility"] == "invisible"
    assert robust["attack"]["size"]["rms"] > 10 * standard["attack"]["size"]["rms"]
    assert "invisible." in standard["caption"]
