"""``POST /v1/explanations``: upload an image, get a job that explains its classification."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, Response, UploadFile, status

from aex.contract.errors import ImageTooLargeError, InvalidJobError
from aex.contract.imaging import inspect_image
from aex.contract.jobs import (
    EXPLAIN_METHODS,
    MAX_EXPLAIN_STEPS,
    MAX_RHO,
    MAX_SEED,
    BatchExplanationJob,
    BatchImage,
    ExplainMethod,
    ExplanationJob,
    parse_spec,
)
from aex.contract.settings import Settings
from aex.models.store import CheckpointEntry, ModelStore

from ..batches import archive_kind, read_batch
from ..deps import CallerDep, QueueDep, SettingsDep, StoreDep
from ..exceptions import ConflictError
from ..schemas import JobAccepted
from ._common import (
    SUBMIT_RESPONSES,
    CallbackField,
    accepted,
    checked_callback,
    read_upload,
    resolve_model,
    resolve_targets,
)

MAX_IMAGE_TARGETS_TEXT = 200_000
MAX_RECORD_TEXT = 1_000_000


def parse_methods(text: str) -> list[ExplainMethod]:
    """The ``method`` field: one method or a comma-separated list of distinct methods."""
    methods = [m.strip() for m in text.split(",") if m.strip()]
    if not methods:
        raise InvalidJobError(f"method is empty: use one of {', '.join(EXPLAIN_METHODS)}")
    unknown = [m for m in methods if m not in EXPLAIN_METHODS]
    if unknown:
        raise InvalidJobError(f"unknown method {unknown[0]!r}; use one or more of "
                              f"{', '.join(EXPLAIN_METHODS)}, comma-separated")
    if len(set(methods)) != len(methods):
        raise InvalidJobError("each method may be named once")
    return methods  # type: ignore[return-value]


def _image_targets(text: str | None, count: int) -> list[Any]:
    """The ``image_targets`` field: a JSON list with one entry per image (a targets string,
    a list of classes, or null for the request's ``targets``)."""
    if text is None:
        return [None] * count
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidJobError(f"image_targets is not valid JSON: {exc}") from exc
    if not isinstance(items, list) or len(items) != count:
        raise InvalidJobError(f"image_targets must be a JSON list with one entry per image "
                              f"({count})")
    for item in items:
        if item is not None and not isinstance(item, str | list):
            raise InvalidJobError("each entry of image_targets is a string such as 'cat,dog', "
                                  "a list of classes, or null")
    return items


def _resolve(targets: Any, entry: CheckpointEntry, settings: Settings) -> Any:
    if targets is None:
        return None
    text = targets if isinstance(targets, str) else json.dumps(targets)
    return resolve_targets(text, entry, settings.max_targets)


def _from_record(text: str, image: list[UploadFile], store: ModelStore, settings: Settings,
                 ) -> tuple[ExplanationJob | BatchExplanationJob, bytes | list[bytes]]:
    """The specification a result's ``record`` names, on the uploaded images (one per
    image of the record, in its order), and their bytes; 4xx when they do not fit."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidJobError(f"record is not valid JSON: {exc}") from exc
    kind = data.get("kind") if isinstance(data, dict) else None
    if kind not in ("explanation", "batch") or not isinstance(data.get("spec"), dict):
        raise InvalidJobError("record must be the record of an explanation or batch result "
                              "(its kind and spec)")
    spec: ExplanationJob | BatchExplanationJob = (
        parse_spec(data["spec"], ExplanationJob) if kind == "explanation"
        else parse_spec(data["spec"], BatchExplanationJob))
    entry = resolve_model(store, spec.model)
    if entry.sha256 != spec.sha256:
        raise ConflictError(f"model {spec.model!r} here has weights {entry.sha256[:12]}..., "
                            f"not the recorded {spec.sha256[:12]}...: the record cannot be "
                            "made again on this service")
    parts = [read_upload(part, settings) for part in image]
    if isinstance(spec, ExplanationJob):
        if len(parts) != 1:
            raise InvalidJobError("an explanation's record takes one image (its input.png)")
        return spec, parts[0]
    kept = [item for item in spec.images if item.error is None]
    if len(parts) != len(kept):
        raise InvalidJobError(f"this batch's record takes {len(kept)} images (the input.png of "
                              f"each image that finished, in order), not {len(parts)}")
    return spec.model_copy(update={"images": kept}), parts


def _batch_spec(parts: list[tuple[str, bytes]], entry: CheckpointEntry, settings: Settings,
                methods: list[ExplainMethod], targets: str, image_targets: str | None,
                rho: float | None, steps: int | None,
                seed: int | None) -> tuple[BatchExplanationJob, list[bytes]]:
    """A batch specification and the uploads of its images (4xx before any work)."""
    items, manifest = read_batch(parts, settings)
    if manifest and image_targets is not None:
        raise InvalidJobError("give per-image targets in the archive's manifest.json or in "
                              "image_targets, not both")
    own = ([manifest.get(item.name) for item in items] if manifest
           else _image_targets(image_targets, len(items)))
    if all(item.error for item in items):
        raise InvalidJobError(f"no image of the batch can be read: {items[0].name}: "
                              f"{items[0].error}")
    images = []
    for item, wanted in zip(items, own, strict=True):
        try:
            resolved = _resolve(wanted, entry, settings)
        except (InvalidJobError, LookupError) as exc:
            raise type(exc)(f"{item.name}: {exc}") from exc
        images.append(BatchImage(name=item.name, targets=resolved, error=item.error))
    spec = BatchExplanationJob(
        model=entry.name, sha256=entry.sha256, methods=methods,
        targets=resolve_targets(targets, entry, settings.max_targets), images=images,
        rho=rho, steps=steps, seed=seed,
    )
    return spec, [item.data or b"" for item in items]

router = APIRouter(prefix="/explanations", tags=["explanations"])


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobAccepted,
    responses=SUBMIT_RESPONSES,
    summary="Explain an image's classification",
)
def create_explanation(
    request: Request,
    response: Response,
    settings: SettingsDep,
    queue: QueueDep,
    store: StoreDep,
    caller: CallerDep,
    image: Annotated[
        list[UploadFile],
        File(description="a PNG, JPEG or WebP image; repeat the part for a batch, or send one "
                         "zip or tar archive of images (with an optional manifest.json "
                         "mapping member paths to targets)"),
    ],
    model: Annotated[
        str | None,
        Form(max_length=64, description="registry name or alias; the default model if omitted",
             examples=["default"]),
    ] = None,
    method: Annotated[
        str,
        Form(max_length=200,
             description="adversarial explanations (the paper's), or a classic heat map: "
                         f"{', '.join(EXPLAIN_METHODS)}; several comma-separated make a "
                         "batch job", examples=["adversarial,saliency"]),
    ] = "adversarial",
    targets: Annotated[
        str,
        Form(max_length=4000,
             description="all, true (= predicted: an upload has no label), predicted, second, "
                         "or class names/indices: 'cat,dog,3' or '[\"cat\", 3]'",
             examples=["all"]),
    ] = "all",
    rho: Annotated[
        float,
        Form(gt=0, le=MAX_RHO, allow_inf_nan=False,
             description="RMS budget ρ of each perturbation (adversarial)"),
    ] = 0.1,
    steps: Annotated[
        int,
        Form(ge=1, le=MAX_EXPLAIN_STEPS,
             description="steps of the perturbation routine (adversarial)"),
    ] = 35,
    image_targets: Annotated[
        str | None,
        Form(max_length=MAX_IMAGE_TARGETS_TEXT,
             description="a batch's own targets: a JSON list with one entry per image (a "
                         "string such as 'cat,dog', a list of classes, or null for targets)",
             examples=['["cat", ["dog", 3], null]']),
    ] = None,
    callback: CallbackField = None,
    record: Annotated[
        str | None,
        Form(max_length=MAX_RECORD_TEXT,
             description="a result's record (JSON): make that result again on these images "
                         "(its input.png files), with the record's model weights, methods, "
                         "targets, settings and seed; the other fields are ignored"),
    ] = None,
    seed: Annotated[
        int | None,
        Form(ge=0, le=MAX_SEED, description="seed torch before each method (SmoothGrad's "
                                            "noise); a random one when omitted, recorded"),
    ] = None,
) -> JobAccepted:
    """Queue an explanation job and answer ``202`` with its id and status URL.

    Several images (repeated ``image`` parts or one archive) or several methods make a
    ``batch`` job: one entry per image in upload order under ``result.images``, each
    image's results visible in ``partial`` as soon as it is done, and an image that cannot
    be read failing alone.

    The adversarial method perturbs the image toward each target class with the
    smallest visible change that the robust network needs (method.md §4); the result
    gives each target's probability before and after and links to the images.
    """
    callback = checked_callback(callback, settings)
    if record is not None:
        recorded, uploads = _from_record(record, image, store, settings)
        job = queue.submit(recorded, uploads, caller.owner, callback)
        request.app.state.metrics.submitted.labels(recorded.kind).inc()
        return accepted(response, job.id, recorded.kind, recorded.model)
    methods = parse_methods(method)
    entry = resolve_model(store, model)
    adversarial = "adversarial" in methods
    if len(image) > settings.max_batch_images:
        raise ImageTooLargeError(f"{len(image)} images; at most {settings.max_batch_images} "
                                 "in one batch (AEX_MAX_BATCH_IMAGES)")
    parts = [(part.filename or "", read_upload(part, settings, inspect=False))
             for part in image]
    if (len(parts) == 1 and len(methods) == 1 and image_targets is None
            and archive_kind(parts[0][1]) is None):
        inspect_image(parts[0][1], settings.max_pixels)
        spec = ExplanationJob(
            model=entry.name, sha256=entry.sha256, method=methods[0],
            targets=resolve_targets(targets, entry, settings.max_targets),
            rho=rho if adversarial else None, steps=steps if adversarial else None,
            seed=seed,
        )
        job = queue.submit(spec, parts[0][1], caller.owner, callback)
    else:
        batch, uploads = _batch_spec(parts, entry, settings, methods, targets, image_targets,
                                     rho if adversarial else None,
                                     steps if adversarial else None, seed)
        job = queue.submit(batch, uploads, caller.owner, callback)
    kind = str(job.meta["kind"])
    request.app.state.metrics.submitted.labels(kind).inc()
    return accepted(response, job.id, kind, entry.name)
