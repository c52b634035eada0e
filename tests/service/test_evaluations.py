"""Evaluations as jobs: ``POST /v1/evaluations`` → the evaluation queue → a real evaluation
worker (``aex worker --evaluations`` with ``AEX_EVAL_DATA``) → figures, pictures and the
model's metadata, read back through ``GET /v1/models/{name}``."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from aex_service_testing import (
    TINY_CLASSES,
    Proc,
    make_model,
    noise_png,
    service_env,
    start_api,
    wait_for_worker,
    wait_job,
)
from redis import Redis

from aex.client import Client, JobResult


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[dict[str, Any]]:
    """An API and one evaluation worker (no explanation worker) on a registry of its own
    and a 6-image ImageFolder tree as the evaluation data."""
    root = tmp_path_factory.mktemp("evaluations")
    registry, data = root / "models", root / "data"
    make_model(registry, "tiny", TINY_CLASSES, [4, 8, 8])
    for n, cls in enumerate(TINY_CLASSES):
        (data / cls).mkdir(parents=True)
        for k in range(2):
            (data / cls / f"{k}.png").write_bytes(noise_png((32, 32), seed=10 * n + k))
    redis = Redis.from_url(redis_url)
    redis.flushdb()
    env = service_env(redis_url, registry, AEX_EVAL_DATA=str(data))
    procs: list[Proc] = []
    try:
        api, url = start_api(env, root / "api.log")
        procs.append(api)
        worker = Proc([sys.executable, "-m", "aex.worker", "--evaluations"], env,
                      root / "worker.log")
        procs.append(worker)
        wait_for_worker(redis, worker)
        yield {"url": url, "redis": redis, "worker": worker}
    finally:
        for proc in procs:
            proc.stop()
        redis.flushdb()


@pytest.fixture
def http(stack: dict[str, Any]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack["url"], timeout=30) as client:
        yield client


def test_explainers_evaluation_puts_the_figures_in_the_model_metadata(
        http: httpx.Client, stack: dict[str, Any]) -> None:
    response = http.post("/v1/evaluations", json={
        "kind": "explainers", "model": "tiny", "n_images": 3,
        "methods": ["adversarial", "gradcam"]})
    assert response.status_code == 202, response.text
    assert response.json()["kind"] == "evaluation"
    assert response.headers["location"] == response.json()["status_url"]
    job = wait_job(http, response.json()["id"], timeout=240)
    assert job["status"] == "finished", (job, stack["worker"].output())
    result = job["result"]
    assert result["model"] == "tiny" and result["evaluation"] == "explainers"
    assert result["n_images"] == 3 and result["saved"] is True
    figures = result["figures"]
    assert set(figures) == {"adversarial", "gradcam", "random"}
    assert figures["adversarial"]["counterfactual"]["n_pairs"] == 3
    assert 0 <= figures["gradcam"]["deletion_area"] <= 1
    assert result["table"].startswith("| method |")
    curves = http.get(result["artifacts"]["curves.png"])
    assert curves.status_code == 200 and curves.content.startswith(b"\x89PNG")
    card = http.get("/v1/models/tiny").json()["card"]
    saved = card["quality"]["explainers"]
    assert saved["n_images"] == 3 and saved["settings"]["methods"] == [
        "adversarial", "gradcam", "random"]
    assert saved["methods"]["gradcam"]["deletion_area"] == figures["gradcam"]["deletion_area"]


def test_ara_evaluation_saves_the_aras_and_their_curves(http: httpx.Client) -> None:
    response = http.post("/v1/evaluations", json={"kind": "ara", "model": "tiny",
                                                  "n_images": 2})
    assert response.status_code == 202, response.text
    job = wait_job(http, response.json()["id"], timeout=240)
    assert job["status"] == "finished", job
    result = job["result"]
    assert result["settings"]["refine"] is True and result["saved"] is True  # fast by default
    model = http.get("/v1/models/tiny").json()
    quality = model["card"]["quality"]
    assert quality["ara_attack"] == result["figures"]["ara_attack"]
    assert quality["ara_images"] == 2 and quality["ara_settings"] == result["settings"]
    assert http.get(quality["curves_url"]).content.startswith(b"\x89PNG")


def test_evaluations_have_their_own_queue(http: httpx.Client, stack: dict[str, Any]) -> None:
    """An explanation waits on the explanation queue (no worker here takes it) while the
    evaluation worker stays free for evaluations."""
    response = http.post("/v1/explanations", data={"model": "tiny"},
                         files={"image": ("x.png", noise_png((32, 32)), "image/png")})
    assert response.status_code == 202
    explanation = response.json()["id"]
    with Client(stack["url"]) as client:  # the Python client's way, waiting for the job
        done = client.evaluate("explainers", model="tiny", n_images=1, methods=["gradcam"],
                               timeout=240)
    assert isinstance(done, JobResult)
    assert done.result["n_images"] == 1 and set(done.result["figures"]) == {"gradcam", "random"}
    assert http.get(f"/v1/jobs/{explanation}").json()["status"] == "queued"
    assert http.delete(f"/v1/jobs/{explanation}").status_code in (200, 202, 204)


@pytest.mark.parametrize(("body", "status", "words"), [
    ({"kind": "explainers", "model": "nope"}, 404, "unknown model 'nope'"),
    ({"kind": "explainers", "n_images": 0}, 422, "n_images"),
    ({"kind": "explainers", "n_images": 100_000}, 422, "n_images"),
    ({"kind": "lime"}, 422, "kind"),
    ({"kind": "explainers", "methods": ["lime"]}, 422, "methods"),
    ({"kind": "ara", "data": "/etc"}, 422, "data"),
])
def test_bad_requests_are_4xx(http: httpx.Client, body: dict[str, Any], status: int,
                              words: str) -> None:
    response = http.post("/v1/evaluations", json=body)
    assert response.status_code == status, response.text
    assert words in response.text
