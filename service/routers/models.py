"""``/v1/models``: the registry, metadata and checkpoint downloads."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Response
from fastapi.responses import FileResponse

from aex.models.store import CheckpointEntry

from ..cards import model_card
from ..deps import StoreDep
from ..exceptions import NotFoundError
from ..schemas import ModelDetail, ModelSummary, Problem
from ._common import resolve_model

router = APIRouter(prefix="/models", tags=["models"])

ModelName = Annotated[str, Path(max_length=64, description="name or alias",
                                examples=["default"])]
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": Problem, "description": "unknown"}}


def _summary(entry: CheckpointEntry) -> dict[str, Any]:
    return {**entry.summary(), "url": f"/v1/models/{entry.name}"}


def _etag(entry: CheckpointEntry) -> str:
    return f'"{entry.sha256}"'


def _etag_matches(header: str, etag: str) -> bool:
    tags = [t.strip().removeprefix("W/") for t in header.split(",")]
    return "*" in tags or etag in tags


@router.get("", response_model=list[ModelSummary], summary="Registered models")
def list_models(store: StoreDep) -> list[dict[str, Any]]:
    """Every registered model with its classes, input size, accuracy and ARA."""
    return [_summary(entry) for entry in store.list()]


@router.get("/{name}", response_model=ModelDetail, responses=NOT_FOUND,
            summary="A model's metadata and card")
def get_model(name: ModelName, store: StoreDep) -> dict[str, Any]:
    """Architecture, classes, input size, training options, accuracy, ARA, checksum, and
    the model's card: what it is, how it was trained (command, data, time, hardware), its
    accuracy and ARA with settings and image counts, its limits and its weights' licence."""
    entry = resolve_model(store, name)
    meta = entry.meta
    return {
        **_summary(entry),
        "arch_kwargs": meta.get("arch_kwargs", {}),
        "mean": meta.get("mean"),
        "std": meta.get("std"),
        "training": meta.get("training", {}),
        "sha256": entry.sha256,
        "size_bytes": entry.weights_path.stat().st_size,
        "created": meta.get("created"),
        "checkpoint_url": f"/v1/models/{entry.name}/checkpoint",
        "card": model_card(entry),
        "metadata": meta,
    }


@router.get(
    "/{name}/checkpoint",
    response_class=FileResponse,
    responses={**NOT_FOUND, 200: {"content": {"application/octet-stream": {}}},
               304: {"description": "If-None-Match matched the sha256 ETag"}},
    summary="Download a model's weights (safetensors)",
)
def get_checkpoint(
    name: ModelName,
    store: StoreDep,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """Stream the safetensors file; its ETag is the sha256 in the model's metadata."""
    entry = resolve_model(store, name)
    etag = _etag(entry)
    if if_none_match and _etag_matches(if_none_match, etag):
        return Response(status_code=304, headers={"ETag": etag})
    return FileResponse(
        entry.weights_path,
        media_type="application/octet-stream",
        filename=f"{entry.name}.safetensors",
        headers={"ETag": etag, "X-Checkpoint-SHA256": entry.sha256},
    )


@router.get(
    "/{name}/ara.png",
    response_class=FileResponse,
    responses={404: {"model": Problem, "description": "unknown model, or no curve picture"},
               200: {"content": {"image/png": {}}, "description": "PNG"}},
    summary="A model's ARA curves as a picture",
)
def get_ara_plot(name: ModelName, store: StoreDep) -> Response:
    """Accuracy against perturbation size (attack and BTR), as ``aex evaluate --plot`` drew it.

    The picture is the file ``<name>.ara.png`` beside the model's metadata, drawn by
    ``aex evaluate --save-metrics``; the path comes from the registry's listing, never
    from the request.
    """
    entry = resolve_model(store, name)
    path = entry.ara_plot_path
    if not path.is_file():
        raise NotFoundError(
            f"model {entry.name!r} has no ARA curve picture; draw one with "
            f"`aex evaluate {entry.name} --data TEST_DIR --save-metrics`"
        )
    return FileResponse(path, media_type="image/png", headers={"Cache-Control": "no-cache"})
