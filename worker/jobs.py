"""The RQ jobs, enqueued by dotted path (``aex.contract.jobs.JOB_FUNCTIONS``).

Each job validates its specification (``aex.contract.jobs``), reads its upload from
Redis, runs the science (``aex.models``) on a cached model, stores its PNGs in Redis and
returns a result of the contract (``aex.contract.results``); the API adds the artifact
URLs. The science lives in ``aex.models``; nothing here re-implements it.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
from typing import Any

import torch

from aex.contract.imaging import decode_for_model
from aex.contract.jobs import AttackJob, ExplanationJob, parse_spec
from aex.contract.results import AttackResult, ExplanationResult
from aex.contract.settings import get_settings
from aex.models import LoadedModel, image_tensor

from .cache import ModelCache
from .context import JobContext
from .explaining import (
    ARRAYS_FILE,
    Stopwatch,
    explain_image,
    make_record,
    predictions,
    resolve_seed,
    safetensors_bytes,
)

logger = logging.getLogger(__name__)

_cache: ModelCache | None = None


def model_cache() -> ModelCache:
    """The worker process's model cache (created on first use)."""
    global _cache
    if _cache is None:
        _cache = ModelCache(get_settings())
    return _cache


def _input(ctx: JobContext, loaded: LoadedModel) -> tuple[torch.Tensor, dict[str, Any]]:
    """The job's upload as model input, and how it was fitted to the model."""
    prepared = decode_for_model(ctx.upload(), loaded.input_size, loaded.channels,
                                get_settings().max_pixels)
    x = image_tensor(prepared.image).unsqueeze(0).to(loaded.device)
    info = {
        "input_size": list(loaded.input_size),
        "original_size": list(prepared.original_size),
        "resized": prepared.resized,
    }
    return x, info


def _class(classes: list[str], index: int, probability: float | torch.Tensor) -> dict[str, Any]:
    return {"class": classes[index], "index": int(index), "probability": float(probability)}


def _given(**options: Any) -> dict[str, Any]:
    """The options a client gave; the core's defaults apply to the others."""
    return {k: v for k, v in options.items() if v is not None}


def attack_settings(mode: str, eps: float, steps: int, target: int | None) -> dict[str, Any]:
    """Every setting of an attack in ``mode`` (``eps`` and ``steps`` as run): the mode's
    momentum and the science's other defaults, for a result's record."""
    from aex.models import ATTACK_DEFAULTS, attack_comparison

    clip = inspect.signature(attack_comparison).parameters["clip"].default
    return {"mode": mode, "momentum": ATTACK_DEFAULTS[mode]["momentum"], "clip": clip,
            "eps": eps, "steps": steps, "target": target,
            "gradcam": "the predicted class, before and after"}


def explain(spec: dict[str, Any]) -> dict[str, Any]:
    """Run an :class:`~aex.contract.jobs.ExplanationJob` on the job's upload.

    Returns an :class:`~aex.contract.results.ExplanationResult` as JSON data, with the
    full-precision arrays (``.npy`` artifacts and one safetensors file), the shared colour
    scales and the record of how it was made.
    """
    ctx = JobContext.current()
    with ctx.running("explanation"):
        watch = Stopwatch()
        job = parse_spec(spec, ExplanationJob)
        seed = resolve_seed(job.seed)
        loaded = model_cache().get(job.model, job.sha256)
        watch.lap("load_s")
        x, info = _input(ctx, loaded)
        watch.lap("decode_s")
        done = explain_image(loaded, x, [job.method], job.targets, rho=job.rho,
                             steps=job.steps, seed=seed, progress=ctx.progress)
        watch.lap("explain_s")
        done.artifacts[ARRAYS_FILE] = safetensors_bytes(done.tensors)
        names = ctx.store_artifacts(done.artifacts)
        watch.lap("store_s")
        method = done.methods[0]
        record = make_record("explanation", job.model_copy(update={"seed": seed}).model_dump(
            mode="json"), loaded, job.sha256, done.settings, seed, [done.input_sha256],
            watch.timings)
        result = {
            "model": loaded.name, "method": job.method, **info,
            "rho": method["rho"], "steps": method["steps"],
            "predictions": done.predictions, "targets": method["targets"],
            "warnings": method["warnings"], "arrays": done.arrays, "scales": done.scales,
            "arrays_file": ARRAYS_FILE, "record": record, "artifacts": names,
        }
        return ExplanationResult.model_validate(result).model_dump(by_alias=True)


def attack(spec: dict[str, Any]) -> dict[str, Any]:
    """Run an :class:`~aex.contract.jobs.AttackJob` on the job's upload: attack the model
    and compare Grad-CAM before and after.

    Returns an :class:`~aex.contract.results.AttackResult` as JSON data.
    """
    from aex.models import ATTACK_DEFAULTS, attack_comparison
    from aex.models.render import difference_png, heatmap_png, image_png

    ctx = JobContext.current()
    with ctx.running("attack"):
        watch = Stopwatch()
        job = parse_spec(spec, AttackJob)
        mode, target = job.mode, job.target
        defaults = ATTACK_DEFAULTS[mode]  # the result says what ran
        eps = defaults["eps"] if job.eps is None else job.eps
        steps = int(defaults["steps"]) if job.steps is None else job.steps
        loaded = model_cache().get(job.model, job.sha256)
        watch.lap("load_s")
        x, info = _input(ctx, loaded)
        watch.lap("decode_s")
        cmp = attack_comparison(loaded.model, x, mode=mode, target=target, eps=eps,
                                steps=steps, progress=ctx.progress)
        classes = loaded.classes
        before, after = cmp.probs_before.detach().cpu(), cmp.probs_after.detach().cpu()
        artifacts = {
            "input.png": image_png(x[0]),
            "adversarial.png": image_png(cmp.x_adv[0]),
            "difference.png": difference_png(cmp.delta[0]),
            "gradcam_before.png": heatmap_png(x[0], cmp.gradcam_before),
            "gradcam_after.png": heatmap_png(cmp.x_adv[0].clamp(0, 1), cmp.gradcam_after),
        }
        watch.lap("attack_s")
        names = ctx.store_artifacts(artifacts)
        watch.lap("store_s")
        record = make_record("attack", job.model_dump(mode="json"), loaded, job.sha256,
                             {"attack": attack_settings(mode, eps, steps, target)}, None,
                             [hashlib.sha256(artifacts["input.png"]).hexdigest()],
                             watch.timings)
        result = {
            "model": loaded.name, "mode": mode, **info, "eps": eps, "steps": steps,
            "target": None if target is None else _class(classes, target, before[target]),
            "success": bool(cmp.success),
            "perturbation_rms": float(cmp.perturbation_rms),
            "before": _class(classes, cmp.pred_before, before[cmp.pred_before]),
            "after": _class(classes, cmp.pred_after, after[cmp.pred_after]),
            "predictions_before": predictions(classes, before),
            "predictions_after": predictions(classes, after),
            "gradcam_similarity": float(cmp.similarity),
            "warnings": list(cmp.warnings),
            "record": record,
            "artifacts": names,
        }
        return AttackResult.model_validate(result).model_dump(by_alias=True)
