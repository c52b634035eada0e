"""What the browser tests share: Debian's Chromium driven by Playwright (never a downloaded
browser), screenshots under ``test-artifacts/screenshots/``, uploads, loaded pictures."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from aex_service_testing import ROOT

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [  # no sandbox as root; nothing reaches for the network
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
JOB_TIMEOUT_MS = 120_000


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium (``/usr/bin/chromium``) under Playwright."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                             args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def screenshot(page: Any, name: str, full_page: bool = True) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=full_page)


def upload(page: Any, selector: str, name: str, data: bytes, mime: str = "image/png") -> None:
    page.set_input_files(selector, files=[{"name": name, "mimeType": mime, "buffer": data}])


def loaded_images(page: Any, selector: str) -> list[int]:
    """naturalWidth of each image matched, once all of them have loaded."""
    page.wait_for_function(
        "s => { const imgs = [...document.querySelectorAll(s)];"
        " return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0); }",
        arg=selector)
    return page.eval_on_selector_all(selector, "imgs => imgs.map(i => i.naturalWidth)")


def compare_result(page: Any, url: str, timeout_ms: int = JOB_TIMEOUT_MS) -> dict[str, Any]:
    """The result of the comparison the compare view shows, once it shows it."""
    page.wait_for_selector("#compare-result .side .caption", timeout=timeout_ms)
    job_id = page.get_attribute("#compare-result", "data-job")
    with httpx.Client(base_url=url, timeout=30) as http:
        return http.get(f"/v1/jobs/{job_id}").json()["result"]
