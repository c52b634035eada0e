"""The batch job: several images, several methods, one model load.

Each image's result is published as soon as it is done (``GET /v1/jobs/{id}`` shows it
while the job runs); an image that cannot be decoded or explained fails alone, with its
reason, and the others go on.
"""

from __future__ import annotations

import logging
from typing import Any

from aex.contract.errors import ImageError
from aex.contract.imaging import decode_for_model
from aex.contract.jobs import BatchExplanationJob, parse_spec
from aex.contract.results import BatchImageResult, BatchResult
from aex.contract.settings import get_settings
from aex.models import LoadedModel, image_tensor

from .context import JobContext
from .explaining import (
    ARRAYS_FILE,
    Stopwatch,
    explain_image,
    make_record,
    resolve_seed,
    safetensors_bytes,
)
from .jobs import model_cache

logger = logging.getLogger(__name__)


def _image_name(index: int) -> str:
    """The prefix of image ``index``'s artifacts."""
    return f"{index:04d}-"


def _explain_one(ctx: JobContext, loaded: LoadedModel, job: BatchExplanationJob, index: int,
                 seed: int, tensors: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """Image ``index``'s result entry and the sha256 of its model input (None if failed)."""
    item = job.images[index]
    entry: dict[str, Any] = {"index": index, "name": item.name}
    n = len(job.images)

    def progress(fraction: float) -> None:
        ctx.progress((index + fraction) / n)

    if item.error is not None:
        entry.update(status="failed", error=item.error)
        return entry, None
    try:
        prepared = decode_for_model(ctx.upload(index), loaded.input_size, loaded.channels,
                                    get_settings().max_pixels)
        x = image_tensor(prepared.image).unsqueeze(0).to(loaded.device)
        done = explain_image(
            loaded, x, job.methods, item.targets if item.targets is not None else job.targets,
            rho=job.rho, steps=job.steps, seed=seed, prefix=_image_name(index),
            progress=progress)
    except (ImageError, ValueError) as exc:
        logger.info("batch %s: image %d (%s) failed: %s", ctx.job.id, index, item.name, exc)
        entry.update(status="failed", error=str(exc))
        return BatchImageResult.model_validate(entry).model_dump(by_alias=True), None
    names = ctx.store_artifacts(done.artifacts, replace=False)
    tensors.update(done.tensors)
    entry.update(
        status="finished", input_size=list(loaded.input_size),
        original_size=list(prepared.original_size), resized=prepared.resized,
        input=f"{_image_name(index)}input.png", predictions=done.predictions,
        explanations=done.methods, arrays=done.arrays, scales=done.scales, artifacts=names,
    )
    entry["settings"] = done.settings
    return entry, done.input_sha256


def explain_batch(spec: dict[str, Any]) -> dict[str, Any]:
    """Run a :class:`~aex.contract.jobs.BatchExplanationJob` on the job's uploads.

    Returns a :class:`~aex.contract.results.BatchResult` as JSON data: one entry per
    image in upload order, each image's arrays in one safetensors file, and the record.
    """
    ctx = JobContext.current()
    with ctx.running("batch"):
        watch = Stopwatch()
        job = parse_spec(spec, BatchExplanationJob)
        seed = resolve_seed(job.seed)
        loaded = model_cache().get(job.model, job.sha256)
        watch.lap("load_s")
        ctx.store_artifacts({}, replace=True)
        ctx.clear_partial()
        images, inputs, names = [], [], []
        settings: dict[str, Any] = {}
        tensors: dict[str, Any] = {}
        for index in range(len(job.images)):
            entry, sha = _explain_one(ctx, loaded, job, index, seed, tensors)
            settings.update(entry.pop("settings", {}))
            entry = BatchImageResult.model_validate(entry).model_dump(by_alias=True)
            images.append(entry)
            names += entry["artifacts"]
            if sha is not None:
                inputs.append(sha)
            ctx.publish_partial(entry)
        watch.lap("explain_s")
        if tensors:
            names += ctx.store_artifacts({ARRAYS_FILE: safetensors_bytes(tensors)},
                                         replace=False)
        watch.lap("store_s")
        record = make_record("batch", job.model_copy(update={"seed": seed}).model_dump(
            mode="json"), loaded, job.sha256, settings, seed, inputs, watch.timings)
        result = {
            "model": loaded.name, "methods": job.methods, "images": images,
            "failed": sum(image["status"] == "failed" for image in images),
            "arrays_file": ARRAYS_FILE if tensors else None, "record": record,
            "artifacts": names,
        }
        return BatchResult.model_validate(result).model_dump(by_alias=True)
