"""A Python client for the aex HTTP service (httpx-based).

Example::

    from aex.client import Client

    with Client("http://127.0.0.1:8000") as client:
        done = client.explain("cat.png", targets="all")
        done.result["predictions"][0]          # {"class": "cat", "index": 3, ...}
        done.image("grid.png").show()           # a PIL image
        done.save("out/")                       # every artifact (PNGs, arrays)
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeAlias
from urllib.parse import quote

import httpx

if TYPE_CHECKING:
    from PIL import Image

ImageInput: TypeAlias = "str | Path | bytes | IO[bytes] | Image.Image"
TERMINAL = ("finished", "failed", "canceled")
DEFAULT_URL = "http://127.0.0.1:8000"
UNAVAILABLE_PAUSE_S = 2.0  # between asks while the service answers 503 without Retry-After
EVENT_READ_TIMEOUT_S = 60.0  # the service sends a keep-alive comment every 10 s
EventHandler: TypeAlias = Callable[[str, dict[str, Any]], None]


class ServiceError(Exception):
    """The service answered with an error status; ``message`` is its explanation."""

    def __init__(self, status_code: int, message: str, retry_after: float | None = None) -> None:
        super().__init__(f"{status_code}: {message}")
        self.status_code = status_code
        self.message = message
        self.retry_after = retry_after


class JobFailedError(Exception):
    """A job ended ``failed`` or ``canceled``; ``job`` is its last view."""

    def __init__(self, job: dict[str, Any]) -> None:
        super().__init__(f"job {job['id']} {job['status']}: {job.get('error')}")
        self.job = job


@dataclass
class JobResult:
    """A finished job: its ``result`` (the API's result object) and its pictures."""

    job: dict[str, Any]
    client: Client = field(repr=False)
    _artifacts: dict[str, bytes] = field(default_factory=dict, repr=False)

    @property
    def id(self) -> str:
        return str(self.job["id"])

    @property
    def result(self) -> dict[str, Any]:
        return dict(self.job["result"])

    @property
    def names(self) -> list[str]:
        """The artifact names, e.g. ``input.png``, ``grid.png``."""
        return list(self.job["result"]["artifacts"])

    def artifact(self, name: str) -> bytes:
        """The PNG bytes of one artifact (downloaded once)."""
        if name not in self._artifacts:
            self._artifacts[name] = self.client.artifact(self.id, name)
        return self._artifacts[name]

    def image(self, name: str) -> Image.Image:
        """One artifact as a PIL image."""
        from PIL import Image

        return Image.open(io.BytesIO(self.artifact(name)))

    @property
    def artifacts(self) -> dict[str, bytes]:
        """Every artifact, name → PNG bytes."""
        return {name: self.artifact(name) for name in self.names}

    def save(self, folder: str | Path) -> list[Path]:
        """Write every artifact (PNGs, ``.npy`` arrays, the safetensors file) into
        ``folder``; the paths written."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for name, data in self.artifacts.items():
            path = folder / Path(name).name
            path.write_bytes(data)
            paths.append(path)
        return paths


def _image_bytes(image: ImageInput) -> tuple[str, bytes]:
    """(file name, bytes) of an image given as a path, bytes, file or PIL image."""
    if isinstance(image, str | Path):
        path = Path(image)
        return path.name, path.read_bytes()
    if isinstance(image, bytes | bytearray):
        return "image", bytes(image)
    if hasattr(image, "save") and hasattr(image, "size"):
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return "image.png", buffer.getvalue()
    if hasattr(image, "read"):
        return Path(str(getattr(image, "name", "image"))).name, image.read()
    raise TypeError(f"cannot upload {type(image).__name__}: give a path, bytes, file or image")


def _targets(targets: str | int | Sequence[str | int]) -> str:
    if isinstance(targets, str):
        return targets
    if isinstance(targets, int):
        return str(targets)
    return json.dumps(list(targets))


class Client:
    """Talks to one aex service.

    Args:
        url: the service's base URL.
        api_key: sent as ``X-API-Key`` when given.
        timeout: seconds for each HTTP request (waiting for a job is separate).
    """

    def __init__(self, url: str = DEFAULT_URL, api_key: str | None = None,
                 timeout: float = 60.0) -> None:
        headers = {"X-API-Key": api_key} if api_key else {}
        self.url = url.rstrip("/")
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self.http.request(method, path, **kwargs)
        if response.status_code >= 400:
            self._raise_for(response)
        return response

    @staticmethod
    def _raise_for(response: httpx.Response) -> None:
        """Raise :class:`ServiceError` for an error response."""
        if response.status_code >= 400:
            try:
                message = str(response.json().get("detail", response.text))
            except (ValueError, AttributeError):
                message = response.text or response.reason_phrase
            retry = response.headers.get("retry-after")
            raise ServiceError(response.status_code, message,
                               float(retry) if retry and retry.isdigit() else None)

    # models
    def models(self) -> list[dict[str, Any]]:
        """The registered models."""
        return list(self._request("GET", "/v1/models").json())

    def model(self, name: str) -> dict[str, Any]:
        """One model's metadata."""
        return dict(self._request("GET", f"/v1/models/{quote(name, safe='')}").json())

    def download_checkpoint(self, name: str, dest: str | Path) -> Path:
        """Download a model's weights to ``dest`` (a file, or a folder to put it in) and
        verify their sha256; a file already there with that hash is kept (HTTP 304)."""
        info = self.model(name)
        dest = Path(dest)
        if dest.is_dir():
            dest = dest / f"{info['name']}.safetensors"
        sha = info["sha256"]
        headers = {}
        if dest.is_file() and hashlib.sha256(dest.read_bytes()).hexdigest() == sha:
            headers["If-None-Match"] = f'"{sha}"'
        partial = dest.with_name(dest.name + ".part")
        digest = hashlib.sha256()
        path = f"/v1/models/{quote(info['name'], safe='')}/checkpoint"
        with self.http.stream("GET", path, headers=headers) as response:
            if response.status_code == 304:
                return dest
            if response.status_code >= 400:
                response.read()
                raise ServiceError(response.status_code, response.text)
            with open(partial, "wb") as fh:
                for block in response.iter_bytes(1 << 20):
                    digest.update(block)
                    fh.write(block)
        if digest.hexdigest() != sha:
            partial.unlink(missing_ok=True)
            raise ValueError(f"checkpoint {name!r}: sha256 {digest.hexdigest()} != {sha}")
        partial.replace(dest)
        return dest

    # jobs
    def _submit(self, path: str, image: ImageInput | Sequence[ImageInput],
                fields: dict[str, Any]) -> dict[str, Any]:
        images: list[ImageInput] = (list(image) if isinstance(image, list | tuple)
                                     else [image])  # type: ignore[list-item]
        form = {k: str(v) for k, v in fields.items() if v is not None}
        files = []
        for one in images:
            filename, data = _image_bytes(one)
            files.append(("image", (filename, data, "application/octet-stream")))
        return dict(self._request("POST", path, data=form, files=files).json())

    def explain_batch(self, images: Sequence[ImageInput],
                      methods: str | Sequence[str] = "adversarial",
                      targets: str | int | Sequence[str | int] = "all", *,
                      image_targets: Sequence[str | Sequence[str | int] | None] | None = None,
                      model: str | None = None, rho: float | None = None,
                      steps: int | None = None, seed: int | None = None, wait: bool = True,
                      on_event: EventHandler | None = None,
                      timeout: float = 600.0) -> JobResult | dict[str, Any]:
        """Explain several images (paths, bytes, files, PIL images, or one zip or tar
        archive) with one or more methods in one job.

        ``image_targets`` gives each image its own targets (None: ``targets``). When
        ``wait``, follows the job's events (``on_event(name, data)`` sees each) and returns
        the finished :class:`JobResult`, whose ``result["images"]`` holds one entry per
        image in upload order; else the submission.
        """
        accepted = self._submit("/v1/explanations", list(images), {
            "model": model, "method": methods if isinstance(methods, str) else ",".join(methods),
            "targets": _targets(targets), "rho": rho, "steps": steps, "seed": seed,
            "image_targets": None if image_targets is None else json.dumps([
                t if t is None or isinstance(t, str) else list(t) for t in image_targets]),
        })
        if not wait:
            return accepted
        return self.follow(accepted["id"], on_event=on_event, timeout=timeout)

    def events(self, job_id: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """The job's server-sent events as ``(name, data)``, until (and with) ``end``."""
        path = f"/v1/jobs/{quote(job_id, safe='')}/events"
        timeout = httpx.Timeout(self.http.timeout.connect or 10.0, read=EVENT_READ_TIMEOUT_S)
        with self.http.stream("GET", path, timeout=timeout) as response:
            if response.status_code >= 400:
                response.read()
                self._raise_for(response)
            name, data = "", []
            for line in response.iter_lines():
                if line.startswith(":"):
                    continue
                if line.startswith("event:"):
                    name = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].strip())
                elif not line and name:
                    yield name, dict(json.loads("\n".join(data)))
                    if name == "end":
                        return
                    name, data = "", []

    def follow(self, job_id: str, on_event: EventHandler | None = None,
               timeout: float = 600.0) -> JobResult:
        """Wait for a job by its events (``on_event(name, data)`` sees each); its
        :class:`JobResult`, or :class:`JobFailedError`. Falls back to :meth:`wait` when the
        stream breaks."""
        deadline = time.monotonic() + timeout
        try:
            for name, data in self.events(job_id):
                if on_event is not None:
                    on_event(name, data)
                if name == "end" and data.get("status") == "finished":
                    return JobResult(data, self)
                if name == "end" and data.get("status") in TERMINAL:
                    raise JobFailedError(data)
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"job {job_id} did not end within {timeout} s")
        except httpx.TransportError:
            pass
        return self.wait(job_id, timeout=max(1.0, deadline - time.monotonic()))

    def rerun(self, job_id: str, wait: bool = True,
              timeout: float = 600.0) -> JobResult | dict[str, Any]:
        """Make a finished job's result again from its record (same weights, settings,
        seed and model inputs); the new job's result when ``wait``, else its submission."""
        accepted = dict(self._request(
            "POST", f"/v1/jobs/{quote(job_id, safe='')}/rerun").json())
        return self.wait(accepted["id"], timeout=timeout) if wait else accepted

    def explain(self, image: ImageInput, targets: str | int | Sequence[str | int] = "all",
                method: str = "adversarial", *, model: str | None = None,
                rho: float | None = None, steps: int | None = None, seed: int | None = None,
                wait: bool = True, timeout: float = 600.0) -> JobResult | dict[str, Any]:
        """Explain ``image``'s classification toward ``targets`` (``seed``: for methods
        that draw noise; the result's ``record`` names the one used).

        Returns the finished :class:`JobResult` when ``wait`` (raising
        :class:`JobFailedError` if the job fails), else the submission (``id`` ...).
        """
        accepted = self._submit("/v1/explanations", image, {
            "model": model, "method": method, "targets": _targets(targets),
            "rho": rho, "steps": steps, "seed": seed,
        })
        return self.wait(accepted["id"], timeout=timeout) if wait else accepted

    def attack(self, image: ImageInput, mode: str = "l2min", *, model: str | None = None,
               eps: float | None = None, steps: int | None = None,
               target: str | int | None = None, wait: bool = True,
               timeout: float = 600.0) -> JobResult | dict[str, Any]:
        """Attack the model on ``image`` (``l2``, ``l2min`` or ``btr``); see :meth:`explain`."""
        accepted = self._submit("/v1/attacks", image, {
            "model": model, "mode": mode, "eps": eps, "steps": steps, "target": target,
        })
        return self.wait(accepted["id"], timeout=timeout) if wait else accepted

    def evaluate(self, kind: str = "explainers", *, model: str | None = None,
                 n_images: int = 100, fast: bool = True, methods: Sequence[str] | None = None,
                 wait: bool = True, timeout: float = 3600.0) -> JobResult | dict[str, Any]:
        """Measure a model on the service's evaluation data: ``"ara"`` (accuracy and both
        ARAs) or ``"explainers"`` (the explanation-quality measures of ``methods``); the
        figures also join the model's metadata. See :meth:`explain` for ``wait``."""
        body: dict[str, Any] = {"kind": kind, "model": model, "n_images": n_images,
                                "fast": fast, "methods": list(methods) if methods else None}
        accepted = self._request("POST", "/v1/evaluations", json=body).json()
        return self.wait(accepted["id"], timeout=timeout) if wait else accepted

    def job(self, job_id: str, wait: float = 0) -> dict[str, Any]:
        """A job's current view (long-polling up to ``wait`` seconds for it to end)."""
        options: dict[str, Any] = {}
        if wait:
            options["params"] = {"wait": wait}
            options["timeout"] = (self.http.timeout.read or 60.0) + wait
        return dict(self._request("GET", f"/v1/jobs/{quote(job_id, safe='')}", **options).json())

    def wait(self, job_id: str, timeout: float = 600.0, poll: float = 30.0) -> JobResult:
        """Wait for a job to end; its :class:`JobResult`, or :class:`JobFailedError`.

        While the service answers 503 (its Redis restarting, say), it asks again after the
        ``Retry-After`` it names, until ``timeout``.
        """
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                job = self.job(job_id, wait=max(0.0, min(poll, left)))
            except ServiceError as exc:
                if exc.status_code != 503 or time.monotonic() >= deadline:
                    raise
                time.sleep(max(0.0, min(exc.retry_after or UNAVAILABLE_PAUSE_S,
                                        deadline - time.monotonic())))
                continue
            if job["status"] == "finished":
                return JobResult(job, self)
            if job["status"] in TERMINAL:
                raise JobFailedError(job)
            if time.monotonic() >= deadline:
                raise TimeoutError(f"job {job_id} still {job['status']} after {timeout} s")

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel a job; its view afterwards."""
        return dict(self._request("DELETE", f"/v1/jobs/{quote(job_id, safe='')}").json())

    def artifact(self, job_id: str, name: str) -> bytes:
        """The PNG bytes of one artifact of a job."""
        path = f"/v1/jobs/{quote(job_id, safe='')}/artifacts/{quote(name, safe='')}"
        return self._request("GET", path).content
