"""Hostile input never gets a 500: a generated corpus (``tests/utils/hostile_corpus.py``) of
damaged and tricky images, field values, ids, headers and request bodies, sent to the real
app on a real Redis, with API keys off and on. Each refusal is a 4xx that says why."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aex_service_testing import image_bytes, make_settings
from fastapi.testclient import TestClient
from hostile_corpus import (
    ACCEPTED,
    Case,
    image_cases,
    job_id_cases,
    number_cases,
    target_cases,
)
from redis import Redis

from aex.service.app import create_app

KEY = "hostile-test-key"
IMAGES = list(image_cases())
TARGETS = list(target_cases())


@pytest.fixture(scope="module", params=["no keys", "keys"])
def client(request: pytest.FixtureRequest, redis_url: str,
           model_dir: Path) -> Iterator[TestClient]:
    """The app with API keys off, then on (a valid key sent); 500s come back as answers."""
    keys = [KEY] if request.param == "keys" else []
    app = create_app(make_settings(redis_url, model_dir, api_keys=keys, max_queue=100_000))
    headers = {"X-API-Key": KEY} if keys else {}
    with TestClient(app, raise_server_exceptions=False, headers=headers) as test_client:
        yield test_client
    Redis.from_url(redis_url).flushdb()


def check(response: Any, statuses: tuple[int, ...], words: str = "") -> None:
    """The answer is one of ``statuses``; a refusal is JSON with a ``detail`` naming it."""
    assert response.status_code in statuses, response.text
    if response.status_code >= 400:
        detail = response.json()["detail"]
        assert isinstance(detail, str) and detail
        assert words in detail, detail


@pytest.mark.parametrize("path", ["/v1/explanations", "/v1/attacks"])
@pytest.mark.parametrize("case", IMAGES, ids=[c.name for c in IMAGES])
def test_images(client: TestClient, case: Case, path: str) -> None:
    response = client.post(path, files={"image": ("upload.bin", case.value)})
    check(response, case.statuses, case.words)


@pytest.mark.parametrize("case", TARGETS, ids=[c.name for c in TARGETS])
def test_targets(client: TestClient, case: Case) -> None:
    response = client.post("/v1/explanations", files={"image": ("x.png", image_bytes())},
                           data={"targets": case.value})
    check(response, case.statuses, case.words)
    attack = client.post("/v1/attacks", files={"image": ("x.png", image_bytes())},
                         data={"mode": "l2", "target": case.value})
    assert attack.status_code in (ACCEPTED, 404, 422), attack.text


@pytest.mark.parametrize(("field", "value", "statuses"), list(number_cases()))
def test_numbers(client: TestClient, field: str, value: str, statuses: tuple[int, ...]) -> None:
    response = client.post("/v1/explanations", files={"image": ("x.png", image_bytes())},
                           data={field: value})
    check(response, statuses, field if ACCEPTED not in statuses else "")


@pytest.mark.parametrize(("path", "statuses", "words"), list(job_id_cases()))
def test_job_ids(client: TestClient, path: str, statuses: tuple[int, ...], words: str) -> None:
    check(client.get(f"/v1/jobs/{path}"), statuses, words)
    check(client.delete(f"/v1/jobs/{path}"), statuses, words)
    head = client.head(f"/v1/jobs/{path}")
    assert head.status_code in statuses and head.content == b""
    check(client.get(f"/v1/jobs/{path}/artifacts/grid.png"), statuses)


def test_artifact_names_and_model_names(client: TestClient) -> None:
    job = client.post("/v1/explanations", files={"image": ("x.png", image_bytes())}).json()
    for name in ("grid.png%0A", "grid.png%00", "%FF.png", "a" * 100 + ".png", "grid.PNG",
                 ".png", "%2E%2E"):
        check(client.get(f"/v1/jobs/{job['id']}/artifacts/{name}"), (404,), "no artifact")
    check(client.get(f"/v1/jobs/{job['id']}/artifacts/..%2Fgrid.png"), (404,))
    check(client.get(f"/v1/jobs/{job['id']}/artifacts/{'a' * 121}"), (422,))
    for name in ("tiny%0A", "tiny%00", "..%2E%2E", "%C2%B2", ".hidden"):
        check(client.get(f"/v1/models/{name}"), (404,), "unknown model")
        check(client.get(f"/v1/models/{name}/checkpoint"), (404,), "unknown model")
    check(client.get("/v1/models/..%2F..%2Fetc%2Fpasswd/checkpoint"), (404,))
    for model in ("tiny\n", "../tiny", "t" * 64, "²"):
        response = client.post("/v1/explanations", files={"image": ("x.png", image_bytes())},
                               data={"model": model})
        check(response, (404,), "unknown model")


@pytest.mark.parametrize("wait", ["nan", "inf", "1e309", "-1", "٣", "soon", "601"])
def test_wait_values(client: TestClient, wait: str) -> None:
    job = client.post("/v1/explanations", files={"image": ("x.png", image_bytes())}).json()
    check(client.get(f"/v1/jobs/{job['id']}", params={"wait": wait}), (422,), "wait")


def test_malformed_bodies(client: TestClient) -> None:
    boundary = "hostile"
    multipart = f"multipart/form-data; boundary={boundary}"
    part = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; "
            'filename="x.png"\r\n\r\n').encode() + image_bytes() + b"\r\n"
    bodies = {
        "no boundary": (part, "multipart/form-data"),
        "garbage": (b"garbage" * 100, multipart),
        "unterminated": (part[:-40], multipart),
        "JSON": (b'{"image": "x"}', "application/json"),
        "image as a text field": (b"image=abc", "application/x-www-form-urlencoded"),
        "too many fields": (part + b"".join(
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"f{i}\"\r\n\r\n1\r\n"
            .encode() for i in range(1100)) + f"--{boundary}--\r\n".encode(), multipart),
        "invalid UTF-8 in a field": (part + f"--{boundary}\r\nContent-Disposition: form-data; "
                                     "name=\"targets\"\r\n\r\n".encode() + b"\xff\xfe\r\n"
                                     + f"--{boundary}--\r\n".encode(), multipart),
        "no content type": (part, ""),
    }
    for name, (body, content_type) in bodies.items():
        headers = {"Content-Type": content_type} if content_type else {}
        response = client.post("/v1/explanations", content=body, headers=headers)
        assert 400 <= response.status_code < 500, (name, response.text)
        assert response.json()["detail"], name


def test_hostile_headers(client: TestClient) -> None:
    keyed = bool(client.headers.get("X-API-Key"))
    for key in (b"\xff\xfe\xfd", b"k" * 8000, KEY.encode() + b"\n", KEY.upper().encode()):
        response = client.get("/v1/models", headers={"X-API-Key": key})
        assert response.status_code == (403 if keyed else 200), response.text
    assert client.get("/healthz", headers={"Accept": b"\xff" * 1000}).status_code == 200


def test_declared_lengths(client: TestClient) -> None:
    files = {"image": ("x.png", image_bytes())}
    for length in ("abc", "-5", "99999999999999999999", "²", ""):
        request = client.build_request("POST", "/v1/explanations", files=files)
        request.headers["Content-Length"] = length
        response = client.send(request)
        assert 200 <= response.status_code < 500, (length, response.text)
