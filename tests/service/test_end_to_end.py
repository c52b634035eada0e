"""The full path: HTTP upload → Redis → a real worker process → result and pictures.

One API process (uvicorn) and one worker process serve the module; Redis (database 13)
is flushed around each test.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aex_service_testing import (
    TINY_CLASSES,
    Proc,
    image_bytes,
    service_env,
    start_api,
    start_worker,
    wait_for_worker,
    wait_job,
    wait_until,
)
from PIL import Image
from redis import Redis

from aex.client import Client, JobFailedError, JobResult

CLASSIC = ["saliency", "integrated_gradients", "smoothgrad", "gradcam"]


@pytest.fixture(scope="module")
def stack(redis_url: str, model_dir: Path,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A running API and worker on the test database."""
    logs = tmp_path_factory.mktemp("logs")
    redis = Redis.from_url(redis_url)
    redis.flushdb()
    env = service_env(redis_url, model_dir)
    procs: list[Proc] = []
    try:
        api, url = start_api(env, logs / "api.log")
        procs.append(api)
        worker = start_worker(env, logs / "worker.log", name="e2e-worker")
        procs.append(worker)
        wait_for_worker(redis, worker)
        yield {"url": url, "redis": redis, "worker": worker, "api": api}
    finally:
        for proc in procs:
            proc.stop()
        redis.flushdb()
        redis.close()


@pytest.fixture
def http(stack: dict[str, Any]) -> Iterator[httpx.Client]:
    """An HTTP client on the API, with the database flushed around the test."""
    redis: Redis = stack["redis"]
    redis.flushdb()
    wait_until(lambda: redis.zcount("aex:workers", time.time(), "+inf"), timeout=10)
    with httpx.Client(base_url=stack["url"], timeout=30) as client:
        yield client
    redis.flushdb()


def png(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    image.load()
    return image


def check_artifacts(http: httpx.Client, result: dict[str, Any]) -> None:
    for name, link in result["artifacts"].items():
        response = http.get(link)
        assert response.status_code == 200, name
        if name.endswith(".png"):
            assert response.headers["content-type"] == "image/png"
            png(response.content)
        else:
            assert response.headers["content-type"] == "application/octet-stream", name


def test_ready_with_a_worker(http: httpx.Client) -> None:
    ready = http.get("/readyz").json()
    assert ready["status"] == "ok" and ready["workers"] == 1


def test_adversarial_explanation_over_http(http: httpx.Client) -> None:
    response = http.post("/v1/explanations", files={"image": ("x.png", image_bytes(), "image/png")},
                         data={"targets": "all", "steps": "12"})
    assert response.status_code == 202
    job = wait_job(http, response.json()["id"])
    assert job["status"] == "finished", job
    assert job["progress"] == 1.0
    assert job["started_at"] and job["ended_at"]
    result = job["result"]
    assert result["model"] == "tiny" and result["method"] == "adversarial"
    assert result["input_size"] == [32, 32]
    assert result["original_size"] == [40, 48] and result["resized"] is True
    probabilities = [p["probability"] for p in result["predictions"]]
    assert probabilities == sorted(probabilities, reverse=True)
    assert abs(sum(probabilities) - 1) < 1e-4
    assert [t["class"] for t in result["targets"]] == TINY_CLASSES
    for target in result["targets"]:
        assert target["probability_after"] > target["probability_before"]
        assert 0 < target["perturbation_rms"] < 0.2  # rho = 0.1, plus one last step
        assert target["artifact"] in result["artifacts"]
        assert target["difference"] in result["artifacts"]
        assert target["sanity_check"] == "passed"
        assert isinstance(target["became_target"], bool)
        if target["probability_after"] > 0.5:  # then no other class can be the answer
            assert target["became_target"] is True
    assert any(t["became_target"] for t in result["targets"])
    assert {"input.png", "grid.png"} <= set(result["artifacts"])
    assert result["artifacts"]["grid.png"] == f"/v1/jobs/{job['id']}/artifacts/grid.png"
    check_artifacts(http, result)
    assert png(http.get(result["artifacts"]["input.png"]).content).size == (32, 32)


@pytest.mark.parametrize("method", CLASSIC)
def test_classic_methods(http: httpx.Client, method: str) -> None:
    response = http.post("/v1/explanations",
                         files={"image": ("x.jpg", image_bytes("JPEG"), "image/jpeg")},
                         data={"method": method, "targets": "predicted"})
    job = wait_job(http, response.json()["id"])
    assert job["status"] == "finished", job
    result = job["result"]
    assert result["method"] == method
    (target,) = result["targets"]
    assert target["index"] == result["predictions"][0]["index"]
    assert target["probability_after"] is None and target["perturbation_rms"] is None
    assert target["became_target"] is None and target["sanity_check"] is None
    assert target["artifact"] == f"{method}_{target['index']}.png"
    check_artifacts(http, result)


@pytest.mark.parametrize(("fields", "expect"), [
    ({"mode": "l2min", "steps": "40"}, None),
    ({"mode": "btr", "steps": "40"}, None),
    ({"mode": "l2", "eps": "2", "steps": "20", "target": "dog"}, "dog"),
    ({"mode": "l2"}, None),  # a bounded attack's own default budget, not the search bound
])
def test_attacks(http: httpx.Client, fields: dict[str, str], expect: str | None) -> None:
    response = http.post("/v1/attacks", files={"image": ("x.webp", image_bytes("WEBP"),
                                                         "image/webp")}, data=fields)
    assert response.status_code == 202, response.text
    job = wait_job(http, response.json()["id"])
    assert job["status"] == "finished", job
    result = job["result"]
    assert result["mode"] == fields["mode"]
    eps, steps = {"l2": (0.01, 7), "l2min": (20.0, 450), "btr": (20.0, 450)}[fields["mode"]]
    assert result["eps"] == float(fields.get("eps", eps))
    assert result["steps"] == int(fields.get("steps", steps))
    assert result["perturbation_rms"] > 0
    assert result["before"]["class"] in TINY_CLASSES and result["after"]["class"] in TINY_CLASSES
    assert -1.0 <= result["gradcam_similarity"] <= 1.0
    assert isinstance(result["success"], bool)
    if expect:
        assert result["target"]["class"] == expect
    settings = result["record"]["settings"]["attack"]
    assert settings["mode"] == fields["mode"] and settings["steps"] == result["steps"]
    assert settings["eps"] == result["eps"]
    assert settings["momentum"] == (0.0 if fields["mode"] == "l2" else 0.9)
    assert len(result["record"]["inputs"]) == 1 and result["record"]["seed"] is None
    assert set(result["artifacts"]) == {"input.png", "adversarial.png", "difference.png",
                                        "gradcam_before.png", "gradcam_after.png"}
    check_artifacts(http, result)


def test_python_client(stack: dict[str, Any], http: httpx.Client, tmp_path: Path) -> None:
    image = Image.open(io.BytesIO(image_bytes()))
    with Client(stack["url"]) as client:
        assert "tiny" in {m["name"] for m in client.models()}
        done = client.explain(image, targets=["ship", 0], steps=10)
        assert isinstance(done, JobResult)
        assert [t["class"] for t in done.result["targets"]] == ["ship", "cat"]
        assert done.image("grid.png").format == "PNG"
        assert len(done.save(tmp_path / "out")) == len(done.names)
        attack = client.attack(image_bytes(), mode="l2min", steps=20)
        assert attack.result["mode"] == "l2min"
        queued = client.explain(image_bytes(), targets="second", wait=False)
        assert client.wait(queued["id"]).result["targets"][0]["index"] == (
            client.job(queued["id"])["result"]["predictions"][1]["index"])
        path = client.download_checkpoint("default", tmp_path)
        assert path.name == "tiny.safetensors"
        assert client.download_checkpoint("default", tmp_path) == path  # 304, kept


def test_remote_cli(stack: dict[str, Any], http: httpx.Client, tmp_path: Path,
                    capsys: pytest.CaptureFixture[str]) -> None:
    from aex.cli import main

    image = tmp_path / "in.png"
    image.write_bytes(image_bytes())
    out = tmp_path / "pictures"
    assert main(["remote", "--url", stack["url"], "explain", str(image), "--targets", "cat",
                 "--steps", "5", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "tiny: predicted" in text and "explanation_0.png" in text
    assert (out / "grid.png").is_file()
    assert main(["remote", "--url", stack["url"], "attack", str(image), "--steps", "10",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["mode"] == "l2min"
    assert main(["remote", "--url", stack["url"], "models"]) == 0
    assert "tiny (aliases: default)" in capsys.readouterr().out
    assert main(["remote", "--url", stack["url"], "explain", str(image),
                 "--model", "nope"]) == 2
    assert "nope" in capsys.readouterr().err


def test_progress_and_cancel_running_job(http: httpx.Client, stack: dict[str, Any]) -> None:
    response = http.post("/v1/explanations", files={"image": ("x.png", image_bytes())},
                         data={"model": "slow", "targets": "all", "steps": "200"})
    job_id = response.json()["id"]
    wait_until(lambda: http.get(f"/v1/jobs/{job_id}").json()["progress"] > 0, timeout=60)
    view = http.delete(f"/v1/jobs/{job_id}").json()
    assert view["cancel_requested"] is True
    final = wait_job(http, job_id, timeout=60)
    assert final["status"] == "canceled"
    assert final["progress"] < 1
    with Client(stack["url"]) as client, pytest.raises(JobFailedError, match="canceled"):
        client.wait(job_id)


def test_metrics_count_jobs(http: httpx.Client) -> None:
    job = http.post("/v1/explanations", files={"image": ("x.png", image_bytes())},
                    data={"targets": "predicted", "steps": "3"}).json()
    wait_job(http, job["id"])
    text = http.get("/metrics").text
    assert 'aex_job_duration_seconds_count{kind="explanation"} 1.0' in text
    assert 'aex_jobs_ended{kind="explanation",status="finished"} 1.0' in text
    assert "aex_workers_alive 1.0" in text


def test_bundled_default_model(http: httpx.Client) -> None:
    bundled = {m["name"]: m for m in http.get("/v1/models").json() if m["bundled"]}
    assert sorted(bundled) == ["aex-cifar10-r20", "aex-cifar10-r20-standard"]
    # the test registry's own models hold `default` and `standard`, which a registry wins
    # over the bundle
    assert [m["aliases"] for m in bundled.values()] == [[], []]
    assert http.get("/v1/models/default").json()["bundled"] is False
    assert http.get("/v1/models/standard").json()["bundled"] is False
    name = "aex-cifar10-r20"
    response = http.post("/v1/explanations", files={"image": ("x.png", image_bytes())},
                         data={"model": name, "targets": "predicted"})
    job = wait_job(http, response.json()["id"], timeout=300)
    assert job["status"] == "finished", job
    assert job["result"]["model"] == name and len(job["result"]["targets"]) == 1
    check_artifacts(http, job["result"])
