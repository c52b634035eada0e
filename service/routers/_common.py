"""What the submission routes share: reading the upload, resolving models and classes."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Form, Response, UploadFile

from aex.contract import targets as contract_targets
from aex.contract.errors import ImageTooLargeError
from aex.contract.imaging import inspect_image
from aex.contract.settings import Settings
from aex.contract.targets import Targets
from aex.contract.webhooks import MAX_URL, check_callback
from aex.models.store import CheckpointEntry, ModelNotFoundError, ModelStore

from ..exceptions import NotFoundError
from ..queue import job_path
from ..schemas import JobAccepted, Problem, ValidationProblem

SUBMIT_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "API key required"},
    403: {"model": Problem, "description": "invalid API key"},
    404: {"model": Problem, "description": "unknown model or class"},
    413: {"model": Problem, "description": "upload or image too large"},
    415: {"model": Problem, "description": "not a PNG, JPEG or WebP image"},
    422: {"model": ValidationProblem, "description": "invalid field or undecodable image"},
    429: {"model": Problem, "description": "queue full; see Retry-After"},
    503: {"model": Problem, "description": "Redis unreachable; see Retry-After"},
}

CallbackField = Annotated[
    str | None,
    Form(max_length=MAX_URL,
         description="a URL that gets a signed POST (HMAC-SHA256, X-Aex-Signature) when the "
                     "job ends; it must be on the operator's AEX_WEBHOOK_ALLOW list",
         examples=["https://tools.internal/aex-hook"]),
]


def checked_callback(callback: str | None, settings: Settings) -> str | None:
    """The ``callback`` field when webhooks are enabled (an allow-list and a secret) and
    the list admits it; 422 saying why not else."""
    if callback is not None:
        check_callback(callback, settings.webhook_allow if settings.webhook_secret else [])
    return callback


def read_upload(image: UploadFile, settings: Settings, inspect: bool = True) -> bytes:
    """The uploaded bytes, after checking (without decoding its pixels, unless ``inspect``
    is false: the caller checks them) that they hold an image a worker can decode safely
    and convert faithfully."""
    data = image.file.read(settings.max_upload_bytes + 1)
    if len(data) > settings.max_upload_bytes:
        raise ImageTooLargeError(
            f"the upload is larger than the limit of {settings.max_upload_bytes} bytes"
        )
    if inspect:
        inspect_image(data, settings.max_pixels)
    return data


def resolve_model(store: ModelStore, name: str | None) -> CheckpointEntry:
    """The checkpoint for ``name`` (the default model when None); 404 naming it if unknown."""
    try:
        return store.get(name or "default")
    except ModelNotFoundError as exc:
        raise NotFoundError(str(exc)) from exc


def resolve_targets(text: str, entry: CheckpointEntry, max_targets: int) -> Targets:
    """The ``targets`` field checked against the model: a word or class indices."""
    return contract_targets.resolve_targets(text, _classes(entry), max_targets)


def resolve_class(token: str, entry: CheckpointEntry) -> int:
    """A class index from a class name or index (404 naming the classes when unknown)."""
    return contract_targets.class_index(token, _classes(entry))


def _classes(entry: CheckpointEntry) -> list[str]:
    return [str(c) for c in entry.meta.get("classes", [])]


def accepted(response: Response, job_id: str, kind: str, model: str) -> JobAccepted:
    """The 202 body, with the job's URL in ``Location``."""
    response.headers["Location"] = job_path(job_id)
    return JobAccepted(id=job_id, kind=kind, status="queued", status_url=job_path(job_id),
                       model=model)
