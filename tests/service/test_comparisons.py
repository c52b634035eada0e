"""``POST /v1/comparisons``: two models side by side on one image.

The submission tests run the app in-process against the test Redis (no worker); the
end-to-end tests go through HTTP to a real API process and a real worker process, on the
test registry's ``plain`` (a ReLU network, alias ``standard``) and ``tiny`` (HHReLU, alias
``default``).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from aex_service_testing import (
    TINY_CLASSES,
    image_bytes,
    make_settings,
    service_stack,
    wait_job,
)
from fastapi.testclient import TestClient
from PIL import Image
from redis import Redis
from rq.job import Job
from rq.serializers import JSONSerializer

from aex.models.levels import ChangeSize
from aex.service.app import create_app


@pytest.fixture
def make_client(redis_url: str, model_dir: Path, redis_db: Redis) -> Iterator[Any]:
    clients: list[TestClient] = []

    def make(**overrides: Any) -> TestClient:
        client = TestClient(create_app(make_settings(redis_url, model_dir, **overrides)))
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def compare(client: TestClient | httpx.Client, data: dict[str, Any] | None = None,
            image: bytes | None = None) -> httpx.Response:
    files = {"image": ("photo.png", image or image_bytes(), "image/png")}
    return client.post("/v1/comparisons", files=files, data=data or {})


def queued_spec(redis: Redis, job_id: str) -> dict[str, Any]:
    return Job.fetch(job_id, connection=redis, serializer=JSONSerializer).kwargs["spec"]


def test_defaults_are_standard_and_default_toward_predicted_and_second(
        make_client: Any, redis_db: Redis) -> None:
    client = make_client()
    response = compare(client)
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["kind"] == "comparison" and body["model"] == "plain vs tiny"
    assert response.headers["location"] == body["status_url"]
    view = client.get(body["status_url"]).json()
    assert view["status"] == "queued" and view["kind"] == "comparison"
    spec = queued_spec(redis_db, body["id"])
    models = {m["name"]: m for m in client.get("/v1/models").json()}
    assert [c["model"] for c in spec["columns"]] == ["plain", "tiny"]
    for column in spec["columns"]:
        assert column["targets"] == ["predicted", "second"]
        assert column["sha256"] == client.get(models[column["model"]]["url"]).json()["sha256"]
    assert spec["rho"] == 0.1 and spec["steps"] == 35
    # empty model fields mean the defaults too
    empty = compare(client, {"model_a": "", "model_b": ""}).json()
    assert empty["model"] == "plain vs tiny"


def test_targets_resolve_against_each_model(make_client: Any, redis_db: Redis) -> None:
    client = make_client()
    response = compare(client, {"model_a": "tiny", "model_b": "standard",
                                "targets": ["ship,0", "second"], "rho": "0.2", "steps": "9"})
    assert response.status_code == 202, response.text
    spec = queued_spec(redis_db, response.json()["id"])
    assert [c["model"] for c in spec["columns"]] == ["tiny", "plain"]
    assert [c["targets"] for c in spec["columns"]] == [[[2, 0], "second"]] * 2
    assert spec["rho"] == 0.2 and spec["steps"] == 9
    # slow's classes are class0..class9: "ship" is not one of them
    refused = compare(client, {"model_a": "slow", "targets": "ship"})
    assert refused.status_code == 404
    assert "unknown class 'ship'" in refused.json()["detail"]


@pytest.mark.parametrize(("fields", "status", "words"), [
    ({"model_a": "nope"}, 404, "unknown model 'nope'"),
    ({"model_b": "x" * 65}, 422, "model_b"),
    ({"targets": ["predicted"] * 5}, 422, "targets"),
    ({"targets": "cat," * 2000}, 422, "targets"),
    ({"targets": ""}, 422, "targets is empty"),
    ({"targets": "zebra"}, 404, "unknown class 'zebra'"),
    ({"targets": "[[1]]"}, 422, "flat JSON list"),
    ({"rho": "5"}, 422, "rho"),
    ({"rho": "nan"}, 422, "rho"),
    ({"steps": "0"}, 422, "steps"),
    ({"steps": "201"}, 422, "steps"),
])
def test_bad_fields_are_refused_in_words(make_client: Any, fields: dict[str, Any], status: int,
                                         words: str) -> None:
    response = compare(make_client(), fields)
    assert response.status_code == status, response.text
    assert words in response.json()["detail"]


def test_a_callback_is_refused_when_webhooks_are_off(make_client: Any) -> None:
    client = make_client()
    response = compare(client, {"callback": "http://127.0.0.1:9/hooks"})
    assert response.status_code == 422
    assert "webhooks are not enabled" in response.json()["detail"]
    response = client.post("/v1/attacks", files={"image": ("x.png", image_bytes())},
                           data={"callback": "http://127.0.0.1:9/hooks"})
    assert response.status_code == 422
    assert "webhooks are not enabled" in response.json()["detail"]


def test_listed_classes_are_bounded_over_all_selections(make_client: Any) -> None:
    client = make_client(max_targets=2)
    assert compare(client, {"targets": ["cat,dog", "predicted"]}).status_code == 202
    response = compare(client, {"targets": ["cat,dog", "ship"]})
    assert response.status_code == 422
    assert "3 classes listed; at most 2" in response.json()["detail"]
    assert compare(client, {"targets": "cat,dog,ship"}).status_code == 422


def test_bad_image_is_refused_before_queueing(make_client: Any, redis_db: Redis) -> None:
    response = compare(make_client(), image=b"not a picture at all" * 5)
    assert response.status_code == 415
    assert not redis_db.keys("aex:upload:*")


def test_openapi_documents_the_comparison(make_client: Any) -> None:
    spec = make_client().get("/openapi.json").json()
    assert "/v1/comparisons" in spec["paths"]
    schemas = spec["components"]["schemas"]
    column = schemas["ComparisonColumn"]["properties"]
    assert {"model", "predictions", "explanations", "attack", "caption"} <= set(column)
    size = schemas["ChangeSize"]["properties"]
    assert {"rms_levels", "max_levels", "visibility"} <= set(size)


# end to end -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def stack(redis_url: str, model_dir: Path,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with service_stack(redis_url, model_dir, tmp_path_factory.mktemp("compare-logs"),
                       preload=("plain", "tiny")) as running:
        yield running


@pytest.fixture
def http(stack: dict[str, Any]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack["url"], timeout=30) as client:
        yield client


def picture(http: httpx.Client, result: dict[str, Any], name: str) -> np.ndarray:
    response = http.get(result["artifacts"][name])
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB"), dtype=float)


def check_size(size: dict[str, Any], original: np.ndarray, shown: np.ndarray) -> None:
    """The reported size is the change between the two pictures, within the half level
    that storing each value as a whole level costs."""
    change = shown - original
    assert abs(np.abs(change).max() - size["max_levels"]) <= 0.5 + 1e-6
    assert abs(np.sqrt((change ** 2).mean()) - size["rms_levels"]) <= 0.5 + 1e-6
    assert size["rms_levels"] == pytest.approx(255 * size["rms"], rel=1e-6)
    word = ChangeSize(size["rms"], size["rms_levels"], size["max_levels"]).visibility
    assert size["visibility"] == word


def test_comparison_end_to_end(http: httpx.Client) -> None:
    response = compare(http, image=image_bytes("JPEG", (64, 48)))
    assert response.status_code == 202, response.text
    job = wait_job(http, response.json()["id"], timeout=600)
    assert job["status"] == "finished", job
    assert job["kind"] == "comparison" and job["model"] == "plain vs tiny"
    assert job["progress"] == 1.0
    result = job["result"]
    assert result["rho"] == 0.1 and result["steps"] == 35
    columns = result["columns"]
    assert [(c["column"], c["model"]) for c in columns] == [("a", "plain"), ("b", "tiny")]
    listed = set()
    for column in columns:
        p = column["column"]
        assert column["input_size"] == [32, 32]
        assert column["original_size"] == [48, 64] and column["resized"] is True
        predictions = column["predictions"]
        assert len(predictions) == len(TINY_CLASSES)
        original = picture(http, result, column["input"])
        assert original.shape == (32, 32, 3)
        # the explanations: toward the predicted and the second most likely class
        explanations = column["explanations"]
        assert [e["index"] for e in explanations] == [x["index"] for x in predictions[:2]]
        for e in explanations:
            assert e["class"] in TINY_CLASSES
            assert e["probability_after"] > e["probability_before"]
            assert e["artifact"] == f"{p}-explanation_{e['index']}.png"
            check_size(e["size"], original, picture(http, result, e["artifact"]))
            assert picture(http, result, e["difference"]).shape == (32, 32, 3)
            listed |= {e["artifact"], e["difference"]}
        # the minimal attack and Grad-CAM before and after
        attack = column["attack"]
        assert attack["mode"] == "l2min" and attack["eps"] == 20 and attack["steps"] == 450
        assert attack["before"]["class"] == predictions[0]["class"]
        assert attack["success"] == (attack["after"]["index"] != attack["before"]["index"])
        assert -1 <= attack["gradcam_similarity"] <= 1
        check_size(attack["size"], original, picture(http, result, attack["adversarial"]))
        for key in ("difference", "gradcam_before", "gradcam_after"):
            assert picture(http, result, attack[key]).shape == (32, 32, 3)
        listed |= {column["input"], attack["adversarial"], attack["difference"],
                   attack["gradcam_before"], attack["gradcam_after"]}
        # the caption states the measured numbers
        size = attack["size"]
        measured = ChangeSize(size["rms"], size["rms_levels"], size["max_levels"])
        caption = column["caption"]
        if attack["success"]:
            assert (f"from {attack['before']['class']} to {attack['after']['class']} has "
                    f"{measured.describe()}: {size['visibility']}.") in caption
        for e in explanations:
            assert (f"{e['class']} (p {e['probability_before']:.2f} → "
                    f"{e['probability_after']:.2f})") in caption
        assert "ρ = 0.1" in caption
        assert f"correlates at {attack['gradcam_similarity']:.2f}." in caption
    assert set(result["artifacts"]) == listed
    assert all(link.startswith(f"/v1/jobs/{job['id']}/artifacts/")
               for link in result["artifacts"].values())


def test_chosen_models_and_targets_end_to_end(http: httpx.Client) -> None:
    response = compare(http, {"model_a": "tiny", "model_b": "plain", "targets": "ship",
                              "rho": "0.05", "steps": "10"})
    assert response.status_code == 202, response.text
    job = wait_job(http, response.json()["id"], timeout=600)
    assert job["status"] == "finished", job
    result = job["result"]
    assert result["rho"] == 0.05 and result["steps"] == 10
    assert [c["model"] for c in result["columns"]] == ["tiny", "plain"]
    for column in result["columns"]:
        (explanation,) = column["explanations"]
        assert explanation["class"] == "ship"
        assert "toward ship (p " in column["caption"] and "ρ = 0.05" in column["caption"]
        assert 0 < explanation["size"]["rms"] < 2 * 0.05  # the budget, plus one last step
    text = http.get("/metrics").text
    assert 'aex_jobs_ended{kind="comparison",status="finished"}' in text


def test_a_comparison_rerun_reproduces_the_result(http: httpx.Client) -> None:
    response = compare(http, {"steps": "5"}, image=image_bytes("JPEG", (64, 48)))
    assert response.status_code == 202, response.text
    first = wait_job(http, response.json()["id"], timeout=600)
    assert first["status"] == "finished", first
    old = first["result"]
    record = old["record"]
    assert record["kind"] == "comparison" and record["model"] == "plain vs tiny"
    assert record["sha256"] == " vs ".join(c["sha256"] for c in record["spec"]["columns"])
    assert record["device"] == "cpu" and record["dtype"] == "float32" and record["seed"] is None
    assert record["settings"]["adversarial"]["steps"] == 5
    assert record["settings"]["attack"] == {
        "mode": "l2min", "momentum": 0.9, "clip": True, "eps": 20.0, "steps": 450,
        "target": None, "gradcam": "the predicted class, before and after"}
    assert len(record["inputs"]) == 2 and record["inputs"][0] == record["inputs"][1]
    assert record["timings"]["compare_s"] > 0
    response = http.post(f"/v1/jobs/{first['id']}/rerun")
    assert response.status_code == 202, response.text
    assert response.json()["kind"] == "comparison"
    again = wait_job(http, response.json()["id"], timeout=600)
    assert again["status"] == "finished", again
    new = again["result"]
    assert new["record"]["spec"] == record["spec"]
    assert new["record"]["inputs"] == record["inputs"]
    for a, b in zip(old["columns"], new["columns"], strict=True):
        assert [p["class"] for p in b["predictions"]] == [p["class"] for p in a["predictions"]]
        assert [p["probability"] for p in b["predictions"]] == pytest.approx(
            [p["probability"] for p in a["predictions"]], abs=1e-6)
        for x, y in zip(a["explanations"], b["explanations"], strict=True):
            assert y["index"] == x["index"]
            assert y["probability_after"] == pytest.approx(x["probability_after"], abs=1e-6)
            assert y["size"]["rms"] == pytest.approx(x["size"]["rms"], abs=1e-6)
        x, y = a["attack"], b["attack"]
        assert (y["before"]["index"], y["after"]["index"], y["success"]) == (
            x["before"]["index"], x["after"]["index"], x["success"])
        assert y["after"]["probability"] == pytest.approx(x["after"]["probability"], abs=1e-6)
        assert y["size"]["rms"] == pytest.approx(x["size"]["rms"], abs=1e-6)
        assert y["gradcam_similarity"] == pytest.approx(x["gradcam_similarity"], abs=1e-5)
