"""The web page end to end: real headless Chromium (Debian's, driven by Playwright) against the
real API (uvicorn) and a real worker process on the tiny test model, Redis database 13.

Each view is saved as a screenshot under ``test-artifacts/screenshots/``. Skipped when
``/usr/bin/chromium`` (or the ``playwright`` Python package) is absent; Playwright never
downloads a browser here, it drives the system one through ``executable_path``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aex_missing import missing
from aex_service_testing import (
    TINY_CLASSES,
    Proc,
    image_bytes,
    service_env,
    start_api,
    start_worker,
    wait_for_worker,
    wait_until,
)
from aex_web_testing import (
    CHROMIUM,
    JOB_TIMEOUT_MS,
    chromium,
    compare_result,
    loaded_images,
    screenshot,
    upload,
)
from PIL import Image
from redis import Redis

from aex.models.store import ModelStore

if not CHROMIUM.is_file():
    missing(f"{CHROMIUM} is absent (apt-get install chromium); the browser tests need it")
pytest.importorskip(
    "playwright.sync_api", reason="the playwright Python package is absent (pip install '.[dev]')")

API_KEY = "web-test-key"
CLASSIC = ["saliency", "integrated_gradients", "smoothgrad", "gradcam"]


def write_ara_plot(model_dir: Path, work: Path) -> None:
    """``aex evaluate tiny --save-metrics`` (draws ``<registry>/tiny.ara.png``) on a few
    made-up pictures."""
    from aex.cli import main

    rng = random.Random(0)
    for name in TINY_CLASSES:
        folder = work / name
        folder.mkdir(parents=True)
        for i in range(3):
            colour = tuple(rng.randrange(256) for _ in range(3))
            Image.new("RGB", (32, 32), colour).save(folder / f"{i}.png")
    assert main(["evaluate", "tiny", "--data", str(work), "--n-images", "9", "--steps", "30",
                 "--eps", "5", "--model-dir", str(model_dir), "--save-metrics",
                 "--json"]) == 0


@pytest.fixture(scope="module")
def stack(redis_url: str, model_dir: Path,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A worker, an open API and an API that needs ``API_KEY``, on the test database."""
    logs = tmp_path_factory.mktemp("web-logs")
    redis = Redis.from_url(redis_url)
    redis.flushdb()
    procs: list[Proc] = []
    try:
        env = service_env(redis_url, model_dir)
        worker = start_worker(env, logs / "worker.log", name="web-worker")
        procs.append(worker)
        api, url = start_api(env, logs / "api.log")
        procs.append(api)
        keyed, keyed_url = start_api(service_env(redis_url, model_dir, AEX_API_KEYS=API_KEY),
                                     logs / "api-keyed.log")
        procs.append(keyed)
        if not (model_dir / "tiny.ara.png").is_file():
            write_ara_plot(model_dir, tmp_path_factory.mktemp("ara-data"))
        wait_for_worker(redis, worker)
        yield {"url": url, "keyed_url": keyed_url, "redis": redis, "model_dir": model_dir}
    finally:
        for proc in procs:
            proc.stop()
        redis.flushdb()
        redis.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as browser:
        yield browser


@pytest.fixture
def page(browser: Any, stack: dict[str, Any]) -> Iterator[Any]:
    """A fresh browser context (its own sessionStorage) at desktop size; JS errors fail."""
    redis: Redis = stack["redis"]
    wait_until(lambda: redis.zcount("aex:workers", time.time(), "+inf"), timeout=10)
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(20_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error"
            and "Failed to load resource" not in msg.text else None)
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


UNLABELLED = """() => [...document.querySelectorAll('input, select, button, textarea')]
    .filter(e => e.type !== 'hidden' && !e.closest('[hidden]'))
    .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
                 && !e.getAttribute('aria-labelledby') && !e.textContent.trim())
    .map(e => e.outerHTML)"""


def shown(text: str) -> float:
    return float(text.strip())


def levels_shown(text: str, value: float) -> bool:
    """Whether a size in levels is shown as the page writes it (1 decimal under 10)."""
    return abs(float(text) - value) <= (0.05 if value < 10 else 0.5) + 1e-9


def test_compare_view_is_the_first(page: Any, stack: dict[str, Any]) -> None:
    url = stack["url"]
    page.goto(f"{url}/")
    page.wait_for_selector("#compare-model-b option[value=tiny]", state="attached")
    assert page.is_visible("#view-compare") and page.is_hidden("#view-explain")
    assert page.get_attribute("nav a[aria-current=page]", "data-nav") == "compare"
    # standard | default, as the API's defaults
    assert page.input_value("#compare-model-a") == "plain"
    assert page.input_value("#compare-model-b") == "tiny"
    assert page.evaluate(UNLABELLED) == []
    upload(page, "#compare-image", "photo.jpg", image_bytes("JPEG", (64, 48)), "image/jpeg")
    page.click("#compare-submit")
    result = compare_result(page, url)
    sides = page.locator("#compare-result .side")
    assert sides.count() == 2
    for n, column in enumerate(result["columns"]):
        side = sides.nth(n)
        assert side.get_attribute("data-model") == column["model"]
        assert column["model"] in side.locator("h3").inner_text()
        assert side.locator(".caption").inner_text() == column["caption"]
        assert "resized from 48×64" in side.locator(".side-input").inner_text()
        explanations = side.locator(".explanation")
        assert explanations.count() == len(column["explanations"]) == 2
        for k, e in enumerate(column["explanations"]):
            row = explanations.nth(k)
            assert row.get_attribute("data-class") == e["class"]
            assert float(row.locator(".p-after").inner_text()) == pytest.approx(
                e["probability_after"], abs=5e-4)
            size = row.locator(".explanation-size")
            assert levels_shown(size.locator(".size-rms").inner_text(), e["size"]["rms_levels"])
            assert levels_shown(size.locator(".size-max").inner_text(), e["size"]["max_levels"])
            assert size.locator(".size-word").inner_text() == e["size"]["visibility"]
        attack = column["attack"]
        size = side.locator(".attack-size")
        assert levels_shown(size.locator(".size-rms").inner_text(), attack["size"]["rms_levels"])
        assert levels_shown(size.locator(".size-max").inner_text(), attack["size"]["max_levels"])
        assert size.locator(".size-word").inner_text() == attack["size"]["visibility"]
        assert side.locator(".attack-answer").inner_text().startswith(attack["before"]["class"])
        names = side.locator("figure.pic").evaluate_all(
            "fs => fs.map(f => f.dataset.artifact.split('-').slice(1).join('-'))")
        assert names == [column["input"], *[name for e in column["explanations"]
                                            for name in (e["artifact"], e["difference"])],
                         attack["adversarial"], attack["difference"], attack["gradcam_before"],
                         attack["gradcam_after"]]
    # every picture arrived, and is shown large enough to see (32 pixels drawn at ~4×)
    assert set(loaded_images(page, "#compare-result img.pic-img")) == {32}
    widths = page.eval_on_selector_all(
        "#compare-result .side-attack img.pic-img", "imgs => imgs.map(i => i.clientWidth)")
    assert len(widths) == 8 and min(widths) >= 120
    screenshot(page, "compare")
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    screenshot(page, "compare-phone")


def test_compare_toward_chosen_classes(page: Any, stack: dict[str, Any]) -> None:
    url = stack["url"]
    page.goto(f"{url}/#/compare")
    page.wait_for_selector("#compare-model-b option[value=tiny]", state="attached")
    page.select_option("#compare-model-a", "tiny")
    page.select_option("#compare-model-b", "plain")
    page.check("#compare-form input[name=targets][value=chosen]")
    page.check("#compare-classes input[value=ship]")
    page.click("#compare-form details.advanced > summary")
    page.fill("#compare-steps", "8")
    upload(page, "#compare-image", "gradient.png", image_bytes())
    page.click("#compare-submit")
    result = compare_result(page, url)
    assert [c["model"] for c in result["columns"]] == ["tiny", "plain"]
    assert result["steps"] == 8
    for column in result["columns"]:
        assert [e["class"] for e in column["explanations"]] == ["ship"]
    assert page.locator("#compare-result .explanation").count() == 2


def test_explain_view(page: Any, stack: dict[str, Any]) -> None:
    url = stack["url"]
    page.goto(f"{url}/#/explain")
    page.wait_for_selector("#explain-model option[value=tiny]", state="attached")
    metrics = httpx.get(f"{url}/v1/models/tiny").json()["metrics"]
    info = page.inner_text("#explain-model-info")
    assert "3 classes" in info
    assert f"accuracy {100 * metrics['accuracy']:.1f} %" in info
    assert f"ARA (BTR) {metrics['ara_btr']:.4f}" in info
    assert page.evaluate(UNLABELLED) == []  # every control has a label
    upload(page, "#explain-image", "gradient.png", image_bytes())
    page.click("#explain-form details.advanced > summary")
    page.fill("#explain-steps", "12")
    page.click("#explain-submit")
    # a progress bar per method, each ending "done"
    page.wait_for_function(
        "() => { const li = [...document.querySelectorAll('#explain-progress li')];"
        " return li.length === 5 && li.every(l => l.dataset.status === 'finished'); }",
        timeout=JOB_TIMEOUT_MS)
    jobs = page.eval_on_selector("#explain-result", "e => JSON.parse(e.dataset.jobs)")
    assert set(jobs) == {"adversarial", *CLASSIC}
    with httpx.Client(base_url=url, timeout=30) as http:
        results = {m: http.get(f"/v1/jobs/{jobs[m]}").json()["result"] for m in jobs}
    adversarial = results["adversarial"]

    rows = page.locator("#explain-result .target")
    assert rows.count() == len(adversarial["targets"]) == len(TINY_CLASSES)
    for n, target in enumerate(adversarial["targets"]):
        row = rows.nth(n)
        assert row.locator("h4").inner_text() == target["class"]
        assert abs(shown(row.locator(".p-before").inner_text())
                   - target["probability_before"]) <= 5e-4
        assert abs(shown(row.locator(".p-after").inner_text())
                   - target["probability_after"]) <= 5e-4
        assert abs(shown(row.locator(".rms").inner_text())
                   - target["perturbation_rms"]) <= 5e-4
        artifacts = row.locator("figure.pic").evaluate_all("fs => fs.map(f => f.dataset.artifact)")
        expected = [target["artifact"], target["difference"]] + [
            next(t["artifact"] for t in results[m]["targets"] if t["index"] == target["index"])
            for m in CLASSIC]
        assert [a.split("-", 2)[2] for a in artifacts] == expected
    # every picture in the grid arrived (one explanation, one difference, four heat maps)
    widths = loaded_images(page, "#explain-result .target img.pic-img")
    assert len(widths) == 6 * len(TINY_CLASSES) and set(widths) == {32}
    predictions = page.locator("#explain-result .predictions li")
    assert predictions.count() == len(adversarial["predictions"])
    assert predictions.first.locator(".pred-class").inner_text() == (
        adversarial["predictions"][0]["class"])
    assert "resized from 40×48" in page.inner_text("#explain-result .input-col")

    screenshot(page, "explain")
    # a picture opens full size in a dialog, with a download link; Escape closes it
    page.locator("#explain-result .target .pic-open").first.click()
    assert page.locator("#viewer").evaluate("d => d.open")
    assert page.get_attribute("#viewer-download", "href").startswith("blob:")
    with page.expect_download() as download:
        page.click("#viewer-download")
    assert download.value.suggested_filename.endswith(adversarial["targets"][0]["artifact"])
    screenshot(page, "explain-full-size", full_page=False)
    page.keyboard.press("Escape")
    assert not page.locator("#viewer").evaluate("d => d.open")

    # phone width: no sideways scrolling
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    screenshot(page, "explain-phone")


def test_attack_view(page: Any, stack: dict[str, Any]) -> None:
    url = stack["url"]
    page.goto(f"{url}/")
    page.click("nav >> text=Attack")
    page.wait_for_function("() => document.activeElement.id === 'attack-title'")  # focus moved
    page.wait_for_selector("#attack-model option[value=tiny]", state="attached")
    upload(page, "#attack-image", "gradient.webp", image_bytes("WEBP"), "image/webp")
    assert page.locator("#attack-target").is_disabled()
    page.fill("#attack-steps", "40")
    page.click("#attack-submit")
    page.wait_for_selector("#attack-result .verdict", timeout=JOB_TIMEOUT_MS)
    job_id = page.get_attribute("#attack-result", "data-job")
    with httpx.Client(base_url=url, timeout=30) as http:
        result = http.get(f"/v1/jobs/{job_id}").json()["result"]
    assert result["mode"] == "l2min"
    assert page.inner_text("#attack-result .class-before").startswith(result["before"]["class"])
    assert page.inner_text("#attack-result .class-after").startswith(result["after"]["class"])
    assert abs(shown(page.inner_text("#attack-result .perturbation"))
               - result["perturbation_rms"]) <= 6e-5  # shown with 4 decimals
    names = page.locator("#attack-result figure.pic").evaluate_all(
        "fs => fs.map(f => f.dataset.artifact.split('-').slice(2).join('-'))")
    assert sorted(names) == sorted(result["artifacts"])
    assert len(loaded_images(page, "#attack-result img.pic-img")) == 5
    screenshot(page, "attack")
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    screenshot(page, "attack-phone")


def test_model_pages(page: Any, stack: dict[str, Any]) -> None:
    url = stack["url"]
    page.goto(f"{url}/#/models")
    page.wait_for_selector(".model-card >> text=tiny")
    assert page.evaluate(UNLABELLED) == []
    # the registry's three models and the two bundled ones, which lost their aliases
    # (`default` to tiny, `standard` to plain)
    assert page.locator(".model-card").count() == 5
    for name in ("aex-cifar10-r20", "aex-cifar10-r20-standard"):
        bundled_card = page.locator(".model-card").filter(
            has=page.get_by_role("link", name=name, exact=True))
        assert "bundled with the service" in bundled_card.inner_text()
        assert bundled_card.locator(".help").count() == 0  # no "also called ..."
    screenshot(page, "models")
    page.click(".model-card a >> text=tiny")
    page.wait_for_selector("#model-curve-slot .curve")
    assert page.inner_text("#models-title") == "Model tiny"
    body = page.inner_text("#models-body")
    accuracy = httpx.get(f"{url}/v1/models/tiny").json()["metrics"]["accuracy"]
    assert f"{100 * accuracy:.1f} %" in body and "resnet20" in body and "ship" in body
    # its card, derived from the metadata: no words were recorded for it
    card = httpx.get(f"{url}/v1/models/tiny").json()["card"]
    assert page.inner_text(".card-description") == card["description"]
    assert page.inner_text(".card-licence") == "not recorded in the model's metadata"
    assert page.locator(".card-limits li").all_inner_texts() == card["limits"]
    assert len(loaded_images(page, "#model-curve-slot img")) == 1
    link = page.locator("#checkpoint-link")
    assert link.get_attribute("href") == "/v1/models/tiny/checkpoint"
    with page.expect_download() as download:
        link.click()
    assert download.value.suggested_filename == "tiny.safetensors"
    screenshot(page, "model")
    # the bundled model's card: its sidecar's words and its metadata's figures
    page.goto(f"{url}/#/models/aex-cifar10-r20")
    page.wait_for_selector("#model-curve-slot .curve")
    card = httpx.get(f"{url}/v1/models/aex-cifar10-r20").json()["card"]
    assert page.inner_text(".card-description") == card["description"]
    assert page.inner_text(".card-licence").startswith("MIT")
    assert page.inner_text(".card-command") == card["training"]["command"]
    how = page.inner_text("#models-body")
    minutes = round(card["training"]["seconds"] / 60)
    assert f"{minutes} minutes" in how and card["training"]["hardware"] in how
    assert "on 10,000 test images" in how and "on 1,000 test images" in how
    assert "eps 20, 450 steps, momentum 0.9, overshoot 1" in how
    limits = page.locator(".card-limits li").all_inner_texts()
    assert limits == card["limits"] and any("resized to 32×32" in x for x in limits)
    assert len(loaded_images(page, "#model-curve-slot img")) == 1
    screenshot(page, "model-card")
    # a model without a curve picture says so in words
    page.goto(f"{url}/#/models/slow")
    page.wait_for_selector("#model-curve-slot .curve.missing")
    assert "no ARA data" in page.inner_text("#model-curve-slot")
    assert "aex evaluate slow" in page.inner_text("#model-curve-slot")
    assert page.locator(".card-explainers").count() == 0
    # figures of an explainers evaluation (as aex benchmark-explainers --save-metrics writes)
    store = ModelStore(stack["model_dir"], include_bundled=False)
    meta = store.get("slow").meta
    figures = {"n_images": 3, "settings": {"replacement": "blur"}, "methods": {
        "adversarial": {"deletion_area": 0.21, "insertion_area": 0.25, "infidelity": 0.006,
                        "max_sensitivity": 0.09, "randomisation_correlation": 0.06,
                        "randomisation_flagged": False, "counterfactual_valid": 0.98},
        "integrated_gradients": {"deletion_area": 0.22, "insertion_area": 0.24,
                                 "infidelity": 0.006, "max_sensitivity": 0.07,
                                 "randomisation_correlation": 0.61,
                                 "randomisation_flagged": True, "counterfactual_valid": None}}}
    try:
        store.write_meta("slow", {**meta, "metrics": {**meta.get("metrics", {}),
                                                      "explainers": figures}})
        page.reload()
        page.wait_for_selector(".card-explainers")
        shown = page.inner_text(".card-explainers")
        assert "Measured on 3 test images" in shown
        assert "deletion 0.21, insertion 0.25" in shown and "counterfactual valid 98 %" in shown
        assert "0.61 (flagged: the map ignores the weights)" in shown
        assert "[object Object]" not in page.inner_text("#models-body")
    finally:
        store.write_meta("slow", meta)


def test_api_key_needed(page: Any, stack: dict[str, Any]) -> None:
    page.goto(f"{stack['keyed_url']}/")
    error = page.locator("#compare-error")  # the first view
    error.wait_for()
    assert "needs an API key" in error.inner_text()
    assert page.locator("#key-panel").evaluate("d => d.open")
    assert page.evaluate("document.activeElement.id") == "api-key"
    screenshot(page, "api-key-needed")
    page.fill("#api-key", "wrong")
    page.press("#api-key", "Enter")
    page.wait_for_function(
        "() => document.querySelector('#compare-error').innerText.includes('not accepted')")
    page.fill("#api-key", API_KEY)
    page.press("#api-key", "Enter")
    page.wait_for_selector("#compare-model-b option[value=tiny]", state="attached")
    assert error.is_hidden()
    assert page.evaluate("sessionStorage.getItem('aex-api-key')") == API_KEY
    # pictures behind the key load too (fetched with X-API-Key): the model's curve
    page.goto(f"{stack['keyed_url']}/#/models/tiny")
    assert len(loaded_images(page, "#model-curve-slot img")) == 1


def test_upload_errors_in_words(page: Any, stack: dict[str, Any]) -> None:
    page.goto(f"{stack['url']}/#/explain")
    page.wait_for_selector("#explain-model option[value=tiny]", state="attached")
    error = page.locator("#explain-error")
    page.click("#explain-submit")
    assert "Choose an image first" in error.inner_text()
    assert page.evaluate("document.activeElement.id") == "explain-image"
    # keyboard: the focused field is the browser's own file input (Space opens its chooser;
    # whether headless Chromium's chooser event arrives in time is the browser's business,
    # so the file is set directly); Enter on the button submits
    focused = page.evaluate("(() => { const e = document.activeElement; return"
                            " [e.tagName, e.type, e.tabIndex, e.disabled].join(':'); })()")
    assert focused == "INPUT:file:0:false"
    upload(page, "#explain-image", "notes.png", b"these are words, not pixels\n" * 10)
    page.focus("#explain-submit")
    page.keyboard.press("Enter")
    page.wait_for_function(
        "() => document.querySelector('#explain-error').innerText.includes('not an image')")
    assert "PNG, JPEG or WebP" in error.inner_text() and "{" not in error.inner_text()
    screenshot(page, "error-not-an-image")
    upload(page, "#explain-image", "huge.png", b"\x89PNG\r\n\x1a\n" + b"\0" * (11 << 20))
    page.click("#explain-submit")
    page.wait_for_function(
        "() => document.querySelector('#explain-error').innerText.includes('too large')")
    assert "10 MB" in error.inner_text()
    screenshot(page, "error-too-large")
    assert page.locator("#explain-result").is_hidden()


def test_queue_full_in_words(page: Any, stack: dict[str, Any]) -> None:
    """429 with Retry-After, as the API answers it (the answer is stubbed in the browser:
    filling the real queue would take a stopped worker and a hundred jobs)."""
    page.goto(f"{stack['url']}/#/explain")
    page.wait_for_selector("#explain-model option[value=tiny]", state="attached")
    page.route("**/v1/explanations", lambda route: route.fulfill(
        status=429, headers={"Retry-After": "7", "Content-Type": "application/json"},
        body='{"detail": "the queue already holds 100 jobs; retry in 7 s"}'))
    upload(page, "#explain-image", "gradient.png", image_bytes())
    page.click("#explain-submit")
    page.wait_for_function(
        "() => document.querySelector('#explain-error').innerText.includes('queue is full')")
    assert "Try again in 7 seconds" in page.inner_text("#explain-error")
    assert page.locator("#explain-progress").is_hidden()
    assert not page.locator("#explain-submit").is_disabled()
