"""The API against a real Redis, without a worker: routes, validation, limits, keys."""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aex_service_testing import (
    bomb_png,
    image_bytes,
    make_settings,
    png_header_only,
)
from fastapi.testclient import TestClient
from PIL import Image
from redis import Redis

from aex.service.app import create_app


@pytest.fixture
def make_client(redis_url: str, model_dir: Path, redis_db: Redis) -> Iterator[Any]:
    """``make_client(**settings)`` → a TestClient on an app with those settings."""
    clients: list[TestClient] = []

    def make(**overrides: Any) -> TestClient:
        url = overrides.pop("redis_url", redis_url)
        client = TestClient(create_app(make_settings(url, model_dir, **overrides)))
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def client(make_client: Any) -> TestClient:
    return make_client()


def submit(client: TestClient, data: bytes | None = None, path: str = "/v1/explanations",
           **fields: Any) -> Any:
    files = {"image": ("x.png", image_bytes() if data is None else data, "image/png")}
    return client.post(path, files=files, data={k: str(v) for k, v in fields.items()})


def test_health_and_readiness_without_worker(client: TestClient) -> None:
    assert client.get("/healthz").json()["status"] == "ok"
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert "no worker" in ready.json()["detail"]


def test_api_process_never_imports_torch(redis_url: str, model_dir: Path,
                                         redis_db: Redis) -> None:
    code = f"""
import sys
from fastapi.testclient import TestClient
from aex.service.app import create_app
from aex.contract.settings import Settings
client = TestClient(create_app(Settings(redis_url={redis_url!r}, model_dir={str(model_dir)!r})))
assert client.get("/v1/models/tiny").status_code == 200
assert client.get("/v1/models/tiny/checkpoint").status_code == 200
job = client.post("/v1/explanations", files={{"image": ("x.png", {image_bytes()!r})}}).json()
assert client.get(job["status_url"]).status_code == 200
assert client.get("/metrics").status_code == 200
import aex.client
assert "torch" not in sys.modules, "the API imported torch"
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_models_list_and_detail(client: TestClient) -> None:
    listed = client.get("/v1/models").json()
    assert {m["name"] for m in listed} >= {"tiny", "slow"}
    tiny = client.get("/v1/models/default").json()
    assert tiny["name"] == "tiny"
    assert tiny["classes"] == ["cat", "dog", "ship"]
    assert tiny["input_size"] == [32, 32]
    assert tiny["metrics"]["accuracy"] == 0.5
    assert tiny["checkpoint_url"] == "/v1/models/tiny/checkpoint"
    missing = client.get("/v1/models/resnet99")
    assert missing.status_code == 404
    assert "resnet99" in missing.json()["detail"]


def test_checkpoint_stream_etag_and_conditional_request(client: TestClient) -> None:
    sha = client.get("/v1/models/tiny").json()["sha256"]
    response = client.get("/v1/models/tiny/checkpoint")
    assert response.status_code == 200
    assert hashlib.sha256(response.content).hexdigest() == sha
    assert response.headers["etag"] == f'"{sha}"'
    again = client.get("/v1/models/tiny/checkpoint", headers={"If-None-Match": f'"{sha}"'})
    assert again.status_code == 304
    assert again.content == b""
    stale = client.get("/v1/models/tiny/checkpoint", headers={"If-None-Match": '"abc"'})
    assert stale.status_code == 200
    assert client.get("/v1/models/..%2Fetc/checkpoint").status_code == 404


def test_submit_answers_202_with_location(client: TestClient, redis_db: Redis) -> None:
    response = submit(client, targets="cat,ship")
    assert response.status_code == 202, response.text
    body = response.json()
    assert response.headers["location"] == body["status_url"] == f"/v1/jobs/{body['id']}"
    assert body["model"] == "tiny"
    view = client.get(body["status_url"]).json()
    assert view["status"] == "queued"
    assert view["position"] == 0
    assert view["progress"] == 0.0
    assert view["result"] is None
    assert redis_db.exists(f"aex:upload:{body['id']}")


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
def test_jpeg_and_webp_accepted(client: TestClient, fmt: str) -> None:
    assert submit(client, image_bytes(fmt)).status_code == 202


def test_attack_submission(client: TestClient) -> None:
    assert submit(client, path="/v1/attacks", mode="l2", eps=0.5, steps=10,
                  target="dog").status_code == 202


BAD_IMAGES = {
    "empty upload": (b"", 422, "empty"),
    "not an image": (b"hello, this is text" * 10, 415, "not a PNG, JPEG or WebP"),
    "truncated PNG": (image_bytes("PNG", (64, 64))[:90], 422, "damaged"),
    "GIF": (image_bytes("GIF"), 415, "not a PNG, JPEG or WebP"),
    "20000x20000 header": (png_header_only(20_000, 20_000), 413, "pixels"),
    "decompression bomb": (bomb_png(3000), 413, "pixels"),
}


@pytest.mark.parametrize("case", list(BAD_IMAGES))
def test_bad_images_are_4xx_with_message(make_client: Any, case: str) -> None:
    data, status, words = BAD_IMAGES[case]
    client = make_client(max_pixels=4_000_000)
    for path in ("/v1/explanations", "/v1/attacks"):
        response = submit(client, data, path=path)
        assert response.status_code == status, response.text
        assert words in response.json()["detail"]


def test_upload_over_the_limit_is_refused(make_client: Any) -> None:
    client = make_client(max_upload_bytes=100_000)
    response = submit(client, image_bytes() + b"\0" * 300_000)
    assert response.status_code == 413
    assert "100000 bytes" in response.json()["detail"]


def test_streamed_upload_without_length_is_cut_off(make_client: Any) -> None:
    client = make_client(max_upload_bytes=100_000)
    boundary = "xyz"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; "
            "filename=\"x.png\"\r\nContent-Type: image/png\r\n\r\n").encode()

    def body() -> Iterator[bytes]:
        yield head
        for _ in range(100):  # 6.4 MB in chunks, never all in memory
            yield b"\0" * 65536

    response = client.post("/v1/explanations", content=body(),
                           headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert response.status_code == 413
    assert "limit" in response.json()["detail"]


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"rho": "abc"}, "rho"),
        ({"rho": "5"}, "rho"),
        ({"rho": "0"}, "rho"),
        ({"rho": "nan"}, "rho"),
        ({"steps": "1.5"}, "steps"),
        ({"steps": "0"}, "steps"),
        ({"steps": "100000"}, "steps"),
        ({"method": "lime"}, "method"),
        ({"targets": " , "}, "targets"),
        ({"targets": "[1, 2"}, "targets"),
        ({"model": "x" * 100}, "model"),
    ],
)
def test_bad_explanation_fields_are_422(client: TestClient, fields: dict[str, str],
                                        words: str) -> None:
    response = submit(client, **fields)
    assert response.status_code == 422, response.text
    assert words in response.json()["detail"]


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"eps": "-1"}, "eps"),
        ({"eps": "inf"}, "eps"),
        ({"steps": "5000"}, "steps"),
        ({"mode": "fgsm"}, "mode"),
        ({"mode": "l2min", "target": "cat"}, "target"),
    ],
)
def test_bad_attack_fields_are_422(client: TestClient, fields: dict[str, str],
                                   words: str) -> None:
    response = submit(client, path="/v1/attacks", **fields)
    assert response.status_code == 422, response.text
    assert words in response.json()["detail"]


def test_missing_image_is_422(client: TestClient) -> None:
    response = client.post("/v1/explanations", data={"targets": "all"})
    assert response.status_code == 422
    assert "image" in response.json()["detail"]


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"model": "resnet99"}, "resnet99"),
        ({"targets": "cat,zebra"}, "zebra"),
        ({"targets": "7"}, "index 7"),
        ({"targets": '["dog", 12]'}, "index 12"),
    ],
)
def test_unknown_model_or_class_is_404_naming_it(client: TestClient, fields: dict[str, str],
                                                  words: str) -> None:
    response = submit(client, **fields)
    assert response.status_code == 404, response.text
    assert words in response.json()["detail"]
    attack = submit(client, path="/v1/attacks", mode="l2", target="zebra")
    assert attack.status_code == 404
    assert "zebra" in attack.json()["detail"]


def test_unknown_job_and_artifact_are_404(client: TestClient) -> None:
    for job_id in ("0" * 32, "not-a-job", "..%2E%2E"):
        response = client.get(f"/v1/jobs/{job_id}")
        assert response.status_code == 404
        assert "unknown job" in response.json()["detail"]
    assert client.delete(f"/v1/jobs/{'1' * 32}").status_code == 404
    job = submit(client).json()
    missing = client.get(f"/v1/jobs/{job['id']}/artifacts/grid.png")
    assert missing.status_code == 404
    assert "grid.png" in missing.json()["detail"]
    assert client.get(f"/v1/jobs/{job['id']}/artifacts/..%2F..%2Fx").status_code == 404


def test_wait_bounds(client: TestClient) -> None:
    job = submit(client).json()
    assert client.get(job["status_url"], params={"wait": -1}).status_code == 422
    assert client.get(job["status_url"], params={"wait": "soon"}).status_code == 422
    assert client.get(job["status_url"], params={"wait": 0.2}).json()["status"] == "queued"


def test_cancel_queued_job(client: TestClient, redis_db: Redis) -> None:
    job = submit(client).json()
    view = client.delete(job["status_url"]).json()
    assert view["status"] == "canceled"
    assert view["error"] == "the job was canceled"
    assert not redis_db.exists(f"aex:upload:{job['id']}")
    again = client.delete(job["status_url"])
    assert again.status_code == 409
    assert "already canceled" in again.json()["detail"]


def test_queue_full_is_429_with_retry_after(make_client: Any) -> None:
    client = make_client(max_queue=2, retry_after_s=7)
    assert submit(client).status_code == 202
    assert submit(client).status_code == 202
    response = submit(client)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    assert "queue" in response.json()["detail"]


def test_api_keys(make_client: Any) -> None:
    client = make_client(api_keys=["alpha", "beta"])
    missing = client.get("/v1/models")
    assert missing.status_code == 401
    assert "X-API-Key" in missing.json()["detail"]
    wrong = client.get("/v1/models", headers={"X-API-Key": "gamma"})
    assert wrong.status_code == 403
    assert "valid API key" in wrong.json()["detail"]
    assert client.get("/v1/models", headers={"X-API-Key": "beta"}).status_code == 200
    files = {"image": ("x.png", image_bytes(), "image/png")}
    assert client.post("/v1/explanations", files=files).status_code == 401
    assert client.post("/v1/explanations", files=files,
                       headers={"X-API-Key": "alpha"}).status_code == 202
    assert client.get(f"/v1/jobs/{'0' * 32}").status_code == 401
    assert client.get("/healthz").status_code == 200


def test_api_keys_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from aex.contract.settings import Settings

    monkeypatch.setenv("AEX_API_KEYS", " k1, k2 ,,")
    assert Settings().api_keys == ["k1", "k2"]


def test_redis_unreachable_is_503(make_client: Any) -> None:
    from aex.service.redis_server import free_port

    client = make_client(redis_url=f"redis://127.0.0.1:{free_port()}/0", retry_after_s=3)
    response = submit(client)
    assert response.status_code == 503
    assert response.headers["retry-after"] == "3"
    assert "Redis" in response.json()["detail"]
    assert client.get(f"/v1/jobs/{'0' * 32}").status_code == 503
    assert client.get("/readyz").status_code == 503
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert "aex_redis_up 0.0" in metrics.text
    assert client.get("/v1/models").status_code == 200  # the registry needs no Redis


def test_metrics(client: TestClient) -> None:
    submit(client)
    client.get("/v1/models/tiny")
    text = client.get("/metrics").text
    assert "aex_queue_depth 1.0" in text
    assert 'aex_http_requests_total{method="GET",route="/v1/models/{name}",status="200"}' in text
    assert 'aex_jobs_submitted_total{kind="explanation"} 1.0' in text
    assert 'aex_job_duration_seconds_count{kind="attack"}' in text


def test_openapi_documents_the_result_contract(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    result = schemas["ExplanationResult"]
    for key in ("model", "method", "input_size", "resized", "predictions", "targets",
                "artifacts"):
        assert key in result["properties"]
    assert result["examples"][0]["predictions"][0]["class"] == "cat"
    target = schemas["TargetResult"]["properties"]
    assert {"class", "index", "probability_before", "probability_after", "perturbation_rms",
            "artifact"} <= set(target)
    assert "X-API-Key" in str(spec["components"]["securitySchemes"])
    assert set(spec["paths"]) >= {
        "/v1/explanations", "/v1/attacks", "/v1/jobs/{job_id}",
        "/v1/jobs/{job_id}/artifacts/{name}", "/v1/models", "/v1/models/{name}",
        "/v1/models/{name}/checkpoint", "/healthz", "/readyz", "/metrics",
    }


def test_image_helpers_resize_and_say_so() -> None:
    from aex.contract.imaging import open_image, prepare_image

    image = open_image(image_bytes("PNG", (50, 40), mode="RGBA"), 10_000)
    prepared = prepare_image(image, (32, 32), 3)
    assert prepared.resized and prepared.original_size == (40, 50)
    assert prepared.image.size == (32, 32) and prepared.image.mode == "RGB"
    same = prepare_image(Image.open(io.BytesIO(image_bytes("PNG", (32, 32)))), (32, 32), 1)
    assert not same.resized and same.image.mode == "L"


def test_keys_own_their_jobs(make_client: Any, redis_db: Redis) -> None:
    client = make_client(api_keys=["alpha", "beta"], admin_api_keys=["root"])
    alpha, beta, root = ({"X-API-Key": key} for key in ("alpha", "beta", "root"))
    files = {"image": ("x.png", image_bytes(), "image/png")}
    job = client.post("/v1/explanations", files=files, headers=alpha).json()
    redis_db.hset(f"aex:artifacts:{job['id']}", "grid.png", image_bytes())
    status, artifact = job["status_url"], f"{job['status_url']}/artifacts/grid.png"
    for path in (status, artifact):
        assert client.get(path, headers=alpha).status_code == 200
        assert client.get(path, headers=root).status_code == 200
        other = client.get(path, headers=beta)
        assert other.status_code == 404 and "unknown job" in other.json()["detail"]
        assert client.head(path, headers=beta).status_code == 404
    assert client.delete(status, headers=beta).status_code == 404
    assert client.get(status, headers=alpha).json()["status"] == "queued"
    assert client.delete(status, headers=root).json()["status"] == "canceled"
    theirs = client.post("/v1/attacks", files=files, headers=beta).json()
    assert client.delete(theirs["status_url"], headers=alpha).status_code == 404
    assert client.delete(theirs["status_url"], headers=beta).json()["status"] == "canceled"
    # an admin key alone switches keys on; a key that is no key is still refused
    admin_only = make_client(admin_api_keys=["root"])
    assert admin_only.get("/v1/models").status_code == 401
    assert admin_only.get("/v1/models", headers=root).status_code == 200
    assert admin_only.get("/v1/models", headers=alpha).status_code == 403
    # Redis holds a hash of each key, never the key
    for key in redis_db.scan_iter():
        kind = redis_db.type(key)
        values: list[Any] = [key]
        if kind == b"string":
            values.append(redis_db.get(key))
        elif kind == b"hash":
            values += [*redis_db.hkeys(key), *redis_db.hvals(key)]
        for value in values:
            for raw in (b"alpha", b"beta", b"root"):
                assert raw not in zlib_or_raw(value), (key, value)


def zlib_or_raw(value: bytes) -> bytes:
    """``value``, inflated when it is zlib data (RQ compresses a job's data)."""
    try:
        return zlib.decompress(value)
    except zlib.error:
        return value


def test_expired_and_unknown_jobs_are_told_apart(client: TestClient, redis_db: Redis) -> None:
    job = submit(client).json()
    redis_db.delete(f"rq:job:{job['id']}")  # as its result expiring would
    expired = client.get(job["status_url"])
    assert expired.status_code == 404 and "has expired" in expired.json()["detail"]
    unknown = client.get(f"/v1/jobs/{'a' * 32}")
    assert unknown.status_code == 404
    assert unknown.json()["detail"] == f"unknown job {'a' * 32!r}"


def test_upload_and_known_id_lifetimes(make_client: Any, redis_db: Redis) -> None:
    client = make_client(job_timeout_s=60, result_ttl_s=100, failure_ttl_s=200)
    job = submit(client).json()
    assert 60 < redis_db.ttl(f"aex:upload:{job['id']}") <= 60 + 300  # not a day
    assert redis_db.ttl(f"aex:known:{job['id']}") > 200  # outlives any result


def test_long_poll_backs_off(client: TestClient, redis_db: Redis) -> None:
    job = submit(client).json()

    def status_reads() -> int:
        stats = redis_db.info("commandstats").get("cmdstat_hget", {})
        return int(stats.get("calls", 0))

    before = status_reads()
    start = time.monotonic()
    assert client.get(job["status_url"], params={"wait": 3}).json()["status"] == "queued"
    assert time.monotonic() - start >= 3
    assert status_reads() - before <= 12  # every 50 ms would be 60


def test_head_wherever_get_works(client: TestClient, redis_db: Redis) -> None:
    job = submit(client).json()
    redis_db.hset(f"aex:artifacts:{job['id']}", "grid.png", image_bytes())
    for path in ("/", "/healthz", "/readyz", "/v1/models", "/v1/models/tiny",
                 "/v1/models/tiny/checkpoint", "/v1/models/nope", job["status_url"],
                 f"{job['status_url']}/artifacts/grid.png", "/static/app.js", "/openapi.json"):
        got, head = client.get(path), client.head(path)
        assert head.status_code == got.status_code, path
        assert head.content == b"", path
        for header in ("content-type", "content-length", "etag"):
            assert head.headers.get(header) == got.headers.get(header), (path, header)
    assert client.head("/metrics").status_code == 200
    assert client.head("/v1/explanations").status_code == 405
