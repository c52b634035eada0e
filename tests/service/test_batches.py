"""Batches, raw arrays and records end to end: HTTP upload → Redis → a real worker process.

One API process and one worker serve the module (the tiny 3-class test model).
"""

from __future__ import annotations

import io
import json
import threading
import time
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from aex_service_testing import TINY_CLASSES, image_bytes, noise_png, service_stack, wait_job
from PIL import Image

HEAT_ALPHA = 0.55


SECRET = "test-webhook-secret"


class Receiver:
    """A local webhook receiver: answers 500 to the first ``fail`` deliveries, then 200."""

    def __init__(self, fail: int = 1) -> None:
        self.deliveries: list[tuple[dict[str, str], bytes, int]] = []
        self.fail = fail
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = 500 if len(receiver.deliveries) < receiver.fail else 200
                receiver.deliveries.append((dict(self.headers), body, status))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    hooks = Receiver()
    yield hooks
    hooks.close()


@pytest.fixture(scope="module")
def stack(redis_url: str, model_dir: Path, receiver: Receiver,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with service_stack(redis_url, model_dir, tmp_path_factory.mktemp("logs"),
                       AEX_WEBHOOK_ALLOW=receiver.url, AEX_WEBHOOK_SECRET=SECRET,
                       AEX_WEBHOOK_BACKOFF_S="0.2") as running:
        yield running


@pytest.fixture
def http(stack: dict[str, Any]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack["url"], timeout=30) as client:
        yield client


def pixels(http: httpx.Client, link: str) -> np.ndarray:
    response = http.get(link)
    assert response.headers["content-type"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB"), dtype=np.float64)


def array(http: httpx.Client, link: str) -> np.ndarray:
    response = http.get(link)
    assert response.status_code == 200 and response.headers["content-type"] == (
        "application/octet-stream")
    return np.load(io.BytesIO(response.content), allow_pickle=False)


def explain(http: httpx.Client, parts: list[tuple[str, bytes]], **fields: Any) -> dict[str, Any]:
    files = [("image", (name, data, "application/octet-stream")) for name, data in parts]
    response = http.post("/v1/explanations", files=files,
                         data={k: str(v) for k, v in fields.items()})
    assert response.status_code == 202, response.text
    job = wait_job(http, response.json()["id"])
    assert job["status"] == "finished", job
    return job


def links(job: dict[str, Any]) -> dict[str, str]:
    return dict(job["result"]["artifacts"])


def test_arrays_match_the_pictures_before_scaling(http: httpx.Client) -> None:
    from matplotlib import colormaps
    from safetensors.numpy import load

    job = explain(http, [("x.png", image_bytes())], method="adversarial,saliency,gradcam",
                  targets="all", steps=8)
    (image,) = job["result"]["images"]
    urls = links(job)
    scales = {s["quantity"]: s for s in image["scales"]}
    assert set(scales) == {"perturbation", "attribution"}
    infos = {a["name"]: a for a in image["arrays"]}
    assert len(infos) == 3 * len(TINY_CLASSES)
    base = pixels(http, urls[image["input"]]) / 255
    stored = load(http.get(urls[job["result"]["arrays_file"]]).content)
    for name, info in infos.items():
        values = array(http, urls[name])
        assert list(values.shape) == info["shape"] and values.dtype == np.float32
        assert np.array_equal(stored[name.removesuffix(".npy")], values)
        shown = pixels(http, urls[info["picture"]])
        if "delta_" in name:
            scale = scales["perturbation"]
            assert info["picture"] in scale["pictures"]
            expect = 255 * np.clip(0.5 + 0.5 * values.transpose(1, 2, 0) / scale["vmax"], 0, 1)
        else:
            scale = scales["attribution"]
            colours = colormaps[scale["colormap"]](np.clip(values / scale["vmax"], 0, 1))[..., :3]
            expect = 255 * np.clip((1 - HEAT_ALPHA) * base + HEAT_ALPHA * colours, 0, 1)
        assert np.abs(shown - expect).max() <= 1.0, name
    # one scale for all targets and methods: the largest value reaches its end
    deltas = [array(http, urls[n]) for n in infos if "delta_" in n]
    assert max(np.abs(d).max() for d in deltas) == pytest.approx(scales["perturbation"]["vmax"])
    heats = [array(http, urls[n]) for n in infos if "delta_" not in n]
    assert max(h.max() for h in heats) == pytest.approx(scales["attribution"]["vmax"])
    assert Image.open(io.BytesIO(http.get(urls["0000-colorbar.png"]).content)).width > 200


def test_a_rerun_reproduces_the_result(http: httpx.Client) -> None:
    first = explain(http, [("x.png", noise_png((40, 30), seed=3))], method="smoothgrad",
                    targets="all")
    record = first["result"]["record"]
    assert record["model"] == "tiny" and len(record["sha256"]) == 64
    assert record["device"] == "cpu" and record["dtype"] == "float32"
    assert record["settings"]["smoothgrad"] == {"smooth_samples": 16, "smooth_sigma": 0.15}
    assert set(record["versions"]) >= {"aex", "torch", "captum", "numpy"}
    assert isinstance(record["seed"], int) and record["spec"]["seed"] == record["seed"]
    assert record["timings"]["explain_s"] > 0
    adversarial = explain(http, [("y.png", image_bytes())], targets="all", steps=9, rho=0.2)
    settings = adversarial["result"]["record"]["settings"]["adversarial"]
    assert settings == {"mode": "encourage", "rho": 0.2, "steps": 9, "overshoot": 5.0,
                        "momentum": 0.0, "clip": True}
    for job in (first, adversarial):
        response = http.post(f"/v1/jobs/{job['id']}/rerun")
        assert response.status_code == 202, response.text
        again = wait_job(http, response.json()["id"])
        assert again["status"] == "finished", again
        old, new = job["result"], again["result"]
        assert new["record"]["spec"] == old["record"]["spec"]
        assert new["record"]["inputs"] == old["record"]["inputs"]
        assert [p["class"] for p in new["predictions"]] == [
            p["class"] for p in old["predictions"]]
        assert [p["probability"] for p in new["predictions"]] == pytest.approx(
            [p["probability"] for p in old["predictions"]], abs=1e-6)
        for a, b in zip(old["targets"], new["targets"], strict=True):
            assert a["class"] == b["class"]
            assert b["probability_before"] == pytest.approx(a["probability_before"], abs=1e-6)
            if a["probability_after"] is not None:
                assert b["probability_after"] == pytest.approx(a["probability_after"],
                                                               abs=1e-6)
        for info in old["arrays"]:
            assert np.allclose(array(http, links(again)[info["name"]]),
                               array(http, links(job)[info["name"]]), atol=1e-6, rtol=1e-5)
    record = adversarial["result"]["record"]
    model_input = http.get(links(adversarial)["input.png"]).content
    again = explain(http, [("input.png", model_input)], record=json.dumps(record),
                    method="saliency", targets="predicted")  # the record wins
    assert again["result"]["record"]["spec"] == record["spec"]
    for info in adversarial["result"]["arrays"]:
        assert np.allclose(array(http, links(again)[info["name"]]),
                           array(http, links(adversarial)[info["name"]]), atol=1e-6, rtol=1e-5)
    forged = {**record, "spec": {**record["spec"], "sha256": "0" * 64}}
    response = http.post("/v1/explanations", files={"image": ("x.png", model_input)},
                         data={"record": json.dumps(forged)})
    assert response.status_code == 409 and "cannot be made again" in response.json()["detail"]
    response = http.post("/v1/explanations", files=[("image", ("a.png", model_input)),
                                                    ("image", ("b.png", model_input))],
                         data={"record": json.dumps(record)})
    assert response.status_code == 422 and "takes one image" in response.json()["detail"]
    running = http.post("/v1/explanations", files={"image": ("x.png", image_bytes())},
                        data={"model": "slow", "steps": "200"}).json()
    response = http.post(f"/v1/jobs/{running['id']}/rerun")
    assert response.status_code == 409 and "not finished" in response.json()["detail"]
    http.delete(f"/v1/jobs/{running['id']}")


def test_twenty_image_zip_streams_and_fails_one_alone(http: httpx.Client) -> None:
    members: dict[str, bytes] = {}
    manifest: dict[str, Any] = {}
    for n in range(20):
        name = f"set/{n:02d}.png"
        members[name] = noise_png((32, 32), seed=n)
        pair = f"{TINY_CLASSES[n % 3]},{TINY_CLASSES[(n + 1) % 3]}"
        manifest[name] = [TINY_CLASSES[n % 3]] if n % 2 else pair
    members["set/07.png"] = noise_png((32, 32), seed=7)[:-40]  # truncated: fails alone
    members["manifest.json"] = json.dumps(manifest).encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    response = http.post("/v1/explanations",
                         files={"image": ("batch.zip", buffer.getvalue(), "application/zip")},
                         data={"method": "adversarial,saliency", "steps": "20"})
    assert response.status_code == 202, response.text
    assert response.json()["kind"] == "batch"
    job_id = response.json()["id"]
    seen: list[int] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        view = http.get(f"/v1/jobs/{job_id}").json()
        if view["status"] in ("finished", "failed", "canceled"):
            break
        if view["status"] == "started":
            seen.append(len(view["partial"] or []))
        time.sleep(0.2)
    assert any(0 < count < 20 for count in seen), seen
    job = wait_job(http, job_id)
    assert job["status"] == "finished", job
    result = job["result"]
    assert [image["name"] for image in result["images"]] == [f"set/{n:02d}.png" for n in range(20)]
    assert result["failed"] == 1
    failed = result["images"][7]
    assert failed["status"] == "failed" and "damaged" in failed["error"]
    assert not any(name.startswith("0007-") for name in result["artifacts"])
    for n, image in enumerate(result["images"]):
        if n == 7:
            continue
        assert image["status"] == "finished" and image["index"] == n
        wanted = manifest[image["name"]]
        classes = wanted if isinstance(wanted, list) else wanted.split(",")
        assert [m["method"] for m in image["explanations"]] == ["adversarial", "saliency"]
        for method in image["explanations"]:
            assert [t["class"] for t in method["targets"]] == classes
        assert set(image["artifacts"]) <= set(result["artifacts"])
        assert all(name.startswith(f"{n:04d}-") for name in image["artifacts"])
    assert len(result["record"]["inputs"]) == 19
    grid = Image.open(io.BytesIO(http.get(links(job)["0000-grid.png"]).content))
    assert grid.height > 2 * 128  # a row per method, and the colour bar


def read_events(http: httpx.Client, job_id: str) -> list[tuple[str, dict[str, Any]]]:
    events, name = [], ""
    with http.stream("GET", f"/v1/jobs/{job_id}/events", timeout=60) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                events.append((name, json.loads(line[5:])))
    return events


def test_server_sent_events_from_queue_to_end(http: httpx.Client) -> None:
    blocker = http.post("/v1/explanations", files={"image": ("x.png", image_bytes())},
                        data={"model": "slow", "targets": "predicted", "steps": "60"}).json()
    parts = [("image", (f"{n}.png", noise_png((32, 32), seed=n), "image/png")) for n in range(3)]
    batch = http.post("/v1/explanations", files=parts,
                      data={"targets": "predicted", "steps": "30"}).json()
    events = read_events(http, batch["id"])
    names = [name for name, _ in events]
    assert names[0] == "queued" and events[0][1]["position"] == 0
    assert "progress" in names
    assert [data["index"] for name, data in events if name == "partial"] == [0, 1, 2]
    assert names[-1] == "end" and names.count("end") == 1
    end = events[-1][1]
    assert end["status"] == "finished" and len(end["result"]["images"]) == 3
    progress = [data["progress"] for name, data in events if name == "progress"]
    assert progress == sorted(progress) and progress[-1] == 1.0
    assert wait_job(http, blocker["id"])["status"] == "finished"
    assert http.get("/v1/jobs/" + "0" * 32 + "/events").status_code == 404


def test_client_and_cli_send_a_folder_and_resume(stack: dict[str, Any], tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from aex.cli import main
    from aex.client import Client

    folder = tmp_path / "in"
    for n in range(5):
        path = folder / ("a" if n % 2 else "b") / f"{n}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(noise_png((32, 32), seed=n))
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(20))
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    command = ["remote", "--url", stack["url"], "explain", str(folder), "--out", str(out),
               "--batch-size", "2", "--method", "adversarial,saliency", "--steps", "3",
               "--targets", "predicted"]
    assert main(command) == 1  # one image failed
    text = capsys.readouterr()
    assert "5 of 6 images explained" in text.out and "broken.png" in text.out
    assert "6/6 images" in text.err
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.json"))
    assert written == ["a/1.png.json", "a/3.png.json", "b/0.png.json", "b/2.png.json",
                       "b/4.png.json"]
    entry = json.loads((out / "a/3.png.json").read_text())
    assert entry["status"] == "finished" and entry["file"] == "a/3.png"
    assert [m["method"] for m in entry["explanations"]] == ["adversarial", "saliency"]
    kept = json.loads((out / "b/0.png.json").read_text())["job"]
    (out / "a/3.png.json").unlink()
    assert main(command) == 1
    text = capsys.readouterr()
    assert "(resumed)" in text.err
    assert json.loads((out / "b/0.png.json").read_text())["job"] == kept
    assert json.loads((out / "a/3.png.json").read_text())["job"] != kept
    seen: list[str] = []
    with Client(stack["url"]) as client:
        done = client.explain_batch([folder / "a" / "1.png", noise_png((32, 32))],
                                    methods=["gradcam"], image_targets=[["dog"], None],
                                    on_event=lambda name, data: seen.append(name))
        images = done.result["images"]
        assert [t["class"] for t in images[0]["explanations"][0]["targets"]] == ["dog"]
        assert seen[-1] == "end" and seen.count("partial") == 2
        again = client.rerun(done.id)
        assert again.result["record"]["inputs"] == done.result["record"]["inputs"]


def test_a_webhook_arrives_signed_and_is_retried(http: httpx.Client, receiver: Receiver) -> None:
    from aex.contract.webhooks import verify

    for url, words in [("http://127.0.0.1:1/hooks", "allow-list"),
                       (receiver.url + "/../../elsewhere", ".. segments"),
                       (receiver.url + "-not/x", "allow-list"),
                       ("ftp://127.0.0.1/hooks", "http or https")]:
        response = http.post("/v1/explanations", files={"image": ("x.png", image_bytes())},
                             data={"callback": url})
        assert response.status_code == 422 and words in response.json()["detail"], url
    job = explain(http, [("x.png", image_bytes())], targets="predicted", steps=3,
                  callback=receiver.url + "/job")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not any(d[2] == 200 for d in receiver.deliveries):
        time.sleep(0.1)
    assert [status for *_, status in receiver.deliveries] == [500, 200]
    (headers, body, _), (headers2, body2, _) = receiver.deliveries
    assert verify(SECRET, headers2, body2) and verify(SECRET, headers, body)
    assert not verify("another secret", headers2, body2)
    assert not verify(SECRET, headers2, body2.replace(b"finished", b"failed"))
    delivered = json.loads(body2)
    assert delivered == {"event": "job.ended", "id": job["id"], "kind": "explanation",
                         "model": "tiny", "status": "finished", "error": None,
                         "ended_at": delivered["ended_at"], "status_url": job["status_url"]}
    assert headers2["X-Aex-Delivery"] == f"{job['id']}.1"
    blocker = http.post("/v1/explanations", files={"image": ("x.png", image_bytes())},
                        data={"model": "slow", "targets": "predicted", "steps": "100"}).json()
    waiting = http.post("/v1/explanations", files={"image": ("x.png", image_bytes())},
                        data={"callback": receiver.url}).json()
    assert http.delete(f"/v1/jobs/{waiting['id']}").json()["status"] == "canceled"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(receiver.deliveries) < 3:
        time.sleep(0.1)
    headers3, body3, _ = receiver.deliveries[2]
    assert verify(SECRET, headers3, body3)
    assert json.loads(body3)["id"] == waiting["id"] and json.loads(body3)["status"] == "canceled"
    assert wait_job(http, blocker["id"])["status"] == "finished"
    # attacks and comparisons take the same callback field, checked the same way
    for kind in ("attacks", "comparisons"):
        response = http.post(f"/v1/{kind}", files={"image": ("x.png", image_bytes())},
                             data={"callback": receiver.url + "/../../elsewhere"})
        assert response.status_code == 422 and ".. segments" in response.json()["detail"]
    attack = http.post("/v1/attacks", files={"image": ("x.png", image_bytes())},
                       data={"mode": "l2", "steps": "3",
                             "callback": receiver.url + "/attack"}).json()
    assert wait_job(http, attack["id"])["status"] == "finished"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(receiver.deliveries) < 4:
        time.sleep(0.1)
    headers4, body4, _ = receiver.deliveries[3]
    assert verify(SECRET, headers4, body4)
    delivered = json.loads(body4)
    assert (delivered["id"], delivered["kind"], delivered["status"]) == (
        attack["id"], "attack", "finished")
    assert headers4["X-Aex-Delivery"] == f"{attack['id']}.0"  # the first attempt
