"""Batch uploads at the API, against a real Redis and no worker: what is accepted, and
every archive over a limit refused with a 4xx before any work (nothing enqueued, nothing
written to a path an archive names)."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aex_service_testing import image_bytes, make_settings, png_header_only
from fastapi.testclient import TestClient
from redis import Redis
from rq import Queue

from aex.service.app import create_app


@pytest.fixture
def make_client(redis_url: str, model_dir: Path, redis_db: Redis) -> Iterator[Any]:
    """``make_client(**settings)`` → a TestClient on an app with those settings."""
    clients: list[TestClient] = []

    def make(**overrides: Any) -> TestClient:
        client = TestClient(create_app(make_settings(redis_url, model_dir, **overrides)))
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def zip_of(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def tar_of(members: dict[str, bytes], compress: bool = False,
           links: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz" if compress else "w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            archive.addfile(info)
    return buffer.getvalue()


def post(client: TestClient, parts: list[tuple[str, bytes]], **fields: Any) -> Any:
    files = [("image", (name, data, "application/octet-stream")) for name, data in parts]
    return client.post("/v1/explanations", files=files,
                       data={k: str(v) for k, v in fields.items()})


def queued(redis: Redis) -> int:
    return Queue("aex", connection=redis).count


def spec_of(redis: Redis, job_id: str) -> dict[str, Any]:
    from rq.job import Job
    from rq.serializers import JSONSerializer

    job = Job.fetch(job_id, connection=redis, serializer=JSONSerializer)
    return dict(job.kwargs["spec"])


def test_repeated_parts_make_a_batch_in_upload_order(make_client: Any,
                                                     redis_db: Redis) -> None:
    client = make_client()
    parts = [(f"{n}.png", image_bytes(size=(32 + n, 32))) for n in range(3)]
    response = post(client, parts, method="adversarial,saliency", targets="predicted",
                    image_targets=json.dumps(["cat", ["dog", 2], None]), seed=7)
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["kind"] == "batch"
    spec = spec_of(redis_db, body["id"])
    assert spec["methods"] == ["adversarial", "saliency"] and spec["seed"] == 7
    assert [(i["name"], i["targets"]) for i in spec["images"]] == [
        ("0.png", [0]), ("1.png", [1, 2]), ("2.png", None)]
    stored = redis_db.hgetall(f"aex:upload:{body['id']}")
    assert [stored[str(n).encode()] for n in range(3)] == [data for _, data in parts]


def test_one_image_one_method_stays_an_explanation(make_client: Any) -> None:
    response = post(make_client(), [("x.png", image_bytes())], method="gradcam")
    assert response.status_code == 202 and response.json()["kind"] == "explanation"


def test_archive_with_manifest_and_an_unreadable_image(make_client: Any,
                                                       redis_db: Redis) -> None:
    members = {"a/one.png": image_bytes(), "b/two.jpg": image_bytes("JPEG"),
               "broken.png": b"\x89PNG\r\n\x1a\nnot really", ".DS_Store": b"junk",
               "manifest.json": json.dumps({"b/two.jpg": "ship,cat"}).encode()}
    for archive in (zip_of(members), tar_of(members), tar_of(members, compress=True)):
        response = post(make_client(), [("batch.bin", archive)], targets="predicted")
        assert response.status_code == 202, response.text
        spec = spec_of(redis_db, response.json()["id"])
        names = [(i["name"], i["targets"], bool(i["error"])) for i in spec["images"]]
        assert names == [("a/one.png", None, False), ("b/two.jpg", [2, 0], False),
                         ("broken.png", None, True)]


@pytest.mark.parametrize(("members", "status", "words"), [
    ({"../escape.png": b"x"}, 422, "climbs out"),
    ({"/etc/abs.png": b"x"}, 422, "absolute"),
    ({"C:/win.png": b"x"}, 422, "absolute"),
    ({"a\\b.png": b"x"}, 422, "backslash"),
    ({"bad\nname.png": b"x"}, 422, "control"),
    ({"x" * 300 + ".png": b"x"}, 422, "longer than"),
    ({"/".join("d" * 10) + "/deep.png": b"x"}, 422, "nested deeper"),
    ({"inner.zip": zip_of({"x.png": b"x"})}, 422, "archives inside"),
    ({f"{n}.png": b"x" for n in range(5)}, 413, "at most 4"),
    ({"manifest.json": b"{}"}, 422, "no image"),
    ({"one.png": b"x", "manifest.json": b'{"two.png": "cat"}'}, 422, "does not hold"),
])
def test_archives_over_their_limits_are_refused(make_client: Any, redis_db: Redis,
                                                members: dict[str, bytes], status: int,
                                                words: str) -> None:
    client = make_client(max_batch_images=4)
    for archive in (zip_of(members), tar_of(members)):
        response = post(client, [("batch", archive)])
        assert response.status_code == status, response.text
        assert words in response.json()["detail"]
    assert queued(redis_db) == 0


def test_bytes_pixels_links_and_bombs(make_client: Any, redis_db: Redis, tmp_path: Path) -> None:
    client = make_client(max_batch_bytes=64 * 1024, max_batch_pixels=5000)
    big = {"a.png": bytes(40 * 1024), "b.png": bytes(40 * 1024)}
    for archive in (zip_of(big), tar_of(big)):
        response = post(client, [("batch", archive)])
        assert response.status_code == 413 and "more than 65536 bytes" in response.json()[
            "detail"]
    bomb = tar_of({"zeros.png": bytes(8 * 1024 * 1024)}, compress=True)
    assert len(bomb) < 20_000
    response = post(client, [("bomb.tgz", bomb)])
    assert response.status_code == 413 and "unpacks to more than" in response.json()["detail"]
    many = {"a.png": png_header_only(60, 60), "b.png": png_header_only(60, 60)}
    response = post(client, [("batch", zip_of(many))])
    assert response.status_code == 413 and "pixels in all" in response.json()["detail"]
    target = tmp_path / f"written-{uuid.uuid4().hex}.png"
    link = tar_of({"ok.png": image_bytes()}, links={"link.png": str(target)})
    response = post(client, [("batch", link)])
    assert response.status_code == 422 and "link" in response.json()["detail"]
    escape = zip_of({f"../../../../../../..{target}": image_bytes()})
    assert post(client, [("batch", escape)]).status_code == 422
    assert not target.exists()
    response = post(client, [("x.png", image_bytes()), ("y.zip", zip_of({"z.png": b"x"}))])
    assert response.status_code == 422 and "one archive alone" in response.json()["detail"]
    assert queued(redis_db) == 0


def test_bad_methods_and_image_targets(make_client: Any, redis_db: Redis) -> None:
    client = make_client()
    two = [("a.png", image_bytes()), ("b.png", image_bytes())]
    for fields, words in [
        ({"method": "adversarial,nope"}, "unknown method 'nope'"),
        ({"method": "saliency,saliency"}, "once"),
        ({"image_targets": '["cat"]'}, "one entry per image (2)"),
        ({"image_targets": "{"}, "not valid JSON"),
        ({"image_targets": '["cat", 7]'}, "string such as"),
        ({"image_targets": '["cat", "zebra"]'}, "b.png: unknown class 'zebra'"),
    ]:
        response = post(client, two, **fields)
        assert 400 <= response.status_code < 500, (fields, response.text)
        assert words in response.json()["detail"], (fields, response.text)
    assert queued(redis_db) == 0
    gz = gzip.compress(b"not a tar at all")
    assert post(client, [("x.gz", gz)]).status_code == 422


def test_event_streams_are_bounded(make_client: Any) -> None:
    client = make_client(max_event_streams=1)
    job_id = post(client, [("x.png", image_bytes())]).json()["id"]
    client.app.state.event_streams = 1  # one stream already open in this process
    response = client.get(f"/v1/jobs/{job_id}/events")
    assert response.status_code == 429 and "AEX_MAX_EVENT_STREAMS" in response.json()["detail"]
    assert response.headers["retry-after"]
    client.app.state.event_streams = 0
    client.delete(f"/v1/jobs/{job_id}")
    with client.stream("GET", f"/v1/jobs/{job_id}/events") as stream:
        assert stream.status_code == 200
        text = "".join(stream.iter_text())
    last = text.rstrip().split("\n\n")[-1]
    assert last.startswith("event: end\ndata: ") and '"status": "canceled"' in last
    assert client.app.state.event_streams == 0
