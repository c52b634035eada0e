"""The paper's argument on one screen, with real networks: the compare view on a CIFAR-10 test
image, the two bundled networks (the standard ResNet-20, alias ``standard``, beside the robust
default) through a real API and worker. Its screenshot,
``test-artifacts/screenshots/compare-cifar10.png``, is the picture the README opens with
(``docs/img/compare-cifar10.png``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from aex_missing import missing
from aex_service_testing import service_stack
from aex_web_testing import CHROMIUM, chromium, compare_result, loaded_images, screenshot, upload

if not CHROMIUM.is_file():
    missing(f"{CHROMIUM} is absent (apt-get install chromium); the browser tests need it")
pytest.importorskip(
    "playwright.sync_api", reason="the playwright Python package is absent (pip install '.[dev]')")

IMAGE = "frog/0922.jpg"  # the third test image of the seeded evaluation order
STANDARD, ROBUST = "aex-cifar10-r20-standard", "aex-cifar10-r20"  # the bundled networks


@pytest.mark.slow
@pytest.mark.needs_shared_data
def test_standard_and_robust_side_by_side(
        redis_url: str, cifar_test_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    registry = tmp_path_factory.mktemp("cifar10-registry")  # empty: the bundled models serve
    logs = tmp_path_factory.mktemp("cifar10-logs")
    with service_stack(redis_url, registry, logs, preload=(STANDARD, ROBUST)) as stack, \
            chromium() as browser:
        url = stack["url"]
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(20_000)
        page.goto(f"{url}/")
        page.wait_for_selector(f"#compare-model-b option[value={ROBUST}]", state="attached")
        assert page.input_value("#compare-model-a") == STANDARD
        assert page.input_value("#compare-model-b") == ROBUST
        upload(page, "#compare-image", "frog.jpg", (cifar_test_dir / IMAGE).read_bytes(),
               "image/jpeg")
        page.click("#compare-submit")
        standard, robust = compare_result(page, url, timeout_ms=600_000)["columns"]
        assert len(loaded_images(page, "#compare-result img.pic-img")) == 2 * 9
        screenshot(page, "compare-cifar10")
    assert (standard["model"], robust["model"]) == (STANDARD, ROBUST)
    # what the captions state, measured on this image: the standard network's answer flips
    # with a change hard to see (RMS 1.2 levels, largest 9.4: "faint"), the robust
    # network's only with a far larger, visible one
    assert standard["attack"]["success"] and robust["attack"]["success"]
    assert standard["attack"]["size"]["visibility"] in ("invisible", "faint")
    assert robust["attack"]["size"]["visibility"] == "visible"
    assert robust["attack"]["size"]["rms"] > 10 * standard["attack"]["size"]["rms"]
    for column in (standard, robust):
        assert f"{column['attack']['size']['visibility']}." in column["caption"]
