"""What the submission routes share: reading the upload, resolving models and classes."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Response, UploadFile

from models._store import CheckpointEntry, ModelNotFoundError, ModelStore

from ..exceptions import ImageTooLargeError, InvalidRequestError, NotFoundError
from ..imaging import open_image
from ..queue import job_path
from ..schemas import JobAccepted, Problem, ValidationProblem
from ..settings import Settings

TARGET_WORDS = ("all", "true", "predicted", "second")

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


def read_upload(image: UploadFile, settings: Settings) -> bytes:
    """The uploaded bytes, after checking that they decode as a safe image."""
    data = image.file.read(settings.max_upload_bytes + 1)
    if len(data) > settings.max_upload_bytes:
        raise ImageTooLargeError(
            f"the upload is larger than the limit of {settings.max_upload_bytes} bytes"
        )
    open_image(data, settings.max_pixels).close()
    return data


def resolve_model(store: ModelStore, name: str | None) -> CheckpointEntry:
    """The checkpoint for ``name`` (the default model when None); 404 naming it if unknown."""
    try:
        return store.get(name or "default")
    except ModelNotFoundError as exc:
        raise NotFoundError(str(exc)) from exc


def resolve_class(token: str | int, entry: CheckpointEntry) -> int:
    """A class index from a class name or index; 404 naming it when the model lacks it."""
    classes = list(entry.meta.get("classes", []))
    if isinstance(token, bool):
        raise InvalidRequestError(f"a class must be a name or an index, not {token!r}")
    if isinstance(token, int) or (isinstance(token, str) and token.strip().isdigit()):
        index = int(token)
        if not 0 <= index < len(classes):
            raise NotFoundError(
                f"unknown class index {index}: model {entry.name!r} has {len(classes)} classes "
                f"(0-{len(classes) - 1})"
            )
        return index
    if not isinstance(token, str):
        raise InvalidRequestError(f"a class must be a name or an index, not {token!r}")
    name = token.strip()
    if name not in classes:
        raise NotFoundError(
            f"unknown class {name!r}: model {entry.name!r} knows {', '.join(classes)}"
        )
    return classes.index(name)


def parse_targets(text: str, entry: CheckpointEntry, max_targets: int) -> str | list[int]:
    """``all``/``true``/``predicted``/``second``, or a list of class indices.

    A list may be comma-separated (``cat,dog,3``) or JSON (``["cat", 3]``).
    """
    word = text.strip().lower()
    if word in TARGET_WORDS:
        if word == "all" and len(entry.meta.get("classes", [])) > max_targets:
            raise InvalidRequestError(
                f"model {entry.name!r} has more than {max_targets} classes; list the targets"
            )
        return word
    if text.strip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidRequestError(f"targets is not a valid JSON list: {exc}") from exc
        if not isinstance(items, list):
            raise InvalidRequestError("targets must be a JSON list of class names or indices")
    else:
        items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise InvalidRequestError(
            f"targets is empty: use {', '.join(TARGET_WORDS)} or a list of classes"
        )
    if len(items) > max_targets:
        raise InvalidRequestError(f"{len(items)} targets; at most {max_targets} are allowed")
    indices: list[int] = []
    for item in items:
        index = resolve_class(item, entry)
        if index not in indices:
            indices.append(index)
    return indices


def accepted(response: Response, job_id: str, kind: str, model: str) -> JobAccepted:
    """The 202 body, with the job's URL in ``Location``."""
    response.headers["Location"] = job_path(job_id)
    return JobAccepted(id=job_id, kind=kind, status="queued", status_url=job_path(job_id),
                       model=model)
