"""The batch and job views and the offline API reference in Debian's Chromium: the bundled
examples, a batch whose images appear as they finish, the job's link after a reload, the
colour scale on every image, and /docs with every request outside this service blocked.

Each view is saved as a screenshot under ``test-artifacts/screenshots/``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aex_service_testing import service_stack
from aex_web_testing import CHROMIUM, chromium, loaded_images, screenshot, upload

if not CHROMIUM.is_file():
    pytest.skip(f"{CHROMIUM} is absent (apt-get install chromium); the browser tests need it",
                allow_module_level=True)
pytest.importorskip(
    "playwright.sync_api", reason="the playwright Python package is absent (pip install '.[dev]')")


@pytest.fixture(scope="module")
def stack(redis_url: str, model_dir: Path,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with service_stack(redis_url, model_dir, tmp_path_factory.mktemp("logs")) as running:
        yield running


@pytest.fixture
def page(stack: dict[str, Any]) -> Iterator[Any]:
    """A desktop-sized page; JavaScript errors fail the test."""
    with chromium() as browser:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.set_default_timeout(30_000)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error"
                and "Failed to load resource" not in msg.text else None)
        yield page
        context.close()
        assert not errors, f"JavaScript errors on the page: {errors}"


def test_batch_of_examples_streams_and_its_link_survives_a_reload(
        page: Any, stack: dict[str, Any]) -> None:
    page.goto(f"{stack['url']}/#/batch")
    page.wait_for_selector("#batch-model option", state="attached")
    examples = page.locator("#batch-gallery button.example")
    assert examples.count() == 10
    assert min(loaded_images(page, "#batch-gallery img")) == 32
    page.click("#batch-all-examples")
    page.wait_for_function("() => document.querySelector('#batch-chosen').dataset.count === '10'")
    upload(page, "#batch-files", "broken.png", b"\x89PNG\r\n\x1a\n" + bytes(30))
    page.uncheck("#batch-form input[name=method][value=saliency]")
    page.fill("#batch-steps", "60")
    screenshot(page, "batch")
    page.click("#batch-submit")
    page.wait_for_url("**/#/jobs/*")
    job_id = page.url.rsplit("/", 1)[-1]
    seen = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status = page.get_attribute("#job-view", "data-status")
        seen.append((status, page.locator("#job-images .batch-image").count()))
        if status in ("finished", "failed", "canceled"):
            break
        time.sleep(0.1)
    assert seen[-1] == ("finished", 11), seen[-1]
    assert any(status == "started" and 0 < count < 11 for status, count in seen), seen
    names = page.locator("#job-images .batch-image h3").all_inner_texts()
    assert names[0] == "1. airplane.jpg" and names[-1] == "11. broken.png"
    assert "failed" in page.inner_text("#job-images .batch-image[data-status=failed]")
    assert page.locator("#job-images .batch-image[data-status=finished]").count() == 10
    widths = loaded_images(page, "#job-images .image-grid .pic-img")
    assert min(widths) == 32
    shown = page.eval_on_selector_all("#job-images .image-grid .pic-img",
                                      "imgs => imgs.map(i => i.getBoundingClientRect().width)")
    assert min(shown) >= 128  # thumbnails big enough to read
    assert min(loaded_images(page, "#job-images .scale-row .pic-img")) > 200  # colour bars
    assert page.get_attribute("#job-link a", "href") == f"#/jobs/{job_id}"
    screenshot(page, "job-batch")
    page.reload()
    page.wait_for_function(
        "() => document.querySelector('#job-view').dataset.status === 'finished'")
    assert page.locator("#job-images .batch-image").count() == 11
    assert page.inner_text("#job-status").startswith("Finished: 11 image(s), 1 failed")
    screenshot(page, "job-after-reload", full_page=False)


def test_api_reference_works_offline(page: Any, stack: dict[str, Any]) -> None:
    outside: list[str] = []

    def only_local(route: Any) -> None:
        if route.request.url.startswith(stack["url"]):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_local)
    page.goto(f"{stack['url']}/docs")
    page.wait_for_selector(".swagger-ui .info .title")
    assert "aex" in page.inner_text(".swagger-ui .info .title")
    page.get_by_text("/v1/jobs/{job_id}/events", exact=True).first.wait_for()
    assert not outside, outside
    screenshot(page, "docs-offline", full_page=False)
