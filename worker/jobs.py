"""The RQ jobs, enqueued by dotted path (``aex.contract.jobs.JOB_FUNCTIONS``).

Each job validates its specification (``aex.contract.jobs``), reads its upload from
Redis, runs the science (``aex.models``) on a cached model, stores its PNGs in Redis and
returns a result of the contract (``aex.contract.results``); the API adds the artifact
URLs. The science lives in ``aex.models``; nothing here re-implements it.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from aex.contract.imaging import decode_for_model
from aex.contract.jobs import AttackJob, ExplanationJob, parse_spec
from aex.contract.results import AttackResult, ExplanationResult
from aex.contract.settings import get_settings
from aex.contract.targets import Targets
from aex.models import LoadedModel, image_tensor

from .cache import ModelCache
from .context import JobContext

logger = logging.getLogger(__name__)

TOP_PREDICTIONS = 10
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


def _predictions(classes: list[str], probs: torch.Tensor) -> list[dict[str, Any]]:
    """The most likely classes first, at most ``TOP_PREDICTIONS``."""
    values, indices = probs.detach().cpu().sort(descending=True)
    return [_class(classes, int(i), float(v))
            for v, i in zip(values[:TOP_PREDICTIONS], indices[:TOP_PREDICTIONS], strict=True)]


def _given(**options: Any) -> dict[str, Any]:
    """The options a client gave; the core's defaults apply to the others."""
    return {k: v for k, v in options.items() if v is not None}


def _adversarial(ctx: JobContext, loaded: LoadedModel, x: torch.Tensor,
                 spec: ExplanationJob) -> dict[str, Any]:
    from aex.models import AdversarialExplainer
    from aex.models.render import change_label, difference_png, grid_png, image_png

    classes = loaded.classes
    exp = AdversarialExplainer(loaded.model, classes=classes).explain(
        x, targets=spec.targets, progress=ctx.progress,
        **_given(rho=spec.rho, steps=spec.steps)
    )
    artifacts = {"input.png": image_png(x[0])}
    rows, labels = [], []
    for t in range(exp.target_index.numel()):
        index = int(exp.target_index[t])
        before, after = float(exp.prob_before[t]), float(exp.prob_after[t])
        name, diff = f"explanation_{index}.png", f"difference_{index}.png"
        artifacts[name] = image_png(exp.images[t])
        artifacts[diff] = difference_png(exp.perturbations[t])
        labels.append(change_label(classes[index], before, after))
        rows.append({
            "class": classes[index], "index": index,
            "probability_before": before, "probability_after": after,
            "perturbation_rms": float(exp.perturbation_rms[t]),
            "artifact": name, "difference": diff,
            "became_target": bool(exp.became_target[t]),
            "sanity_check": "passed" if bool(exp.sane[t]) else "failed",
        })
    artifacts["grid.png"] = grid_png([x[0], *exp.images], ["input", *labels])
    return {
        "rho": spec.rho, "steps": spec.steps,
        "predictions": _predictions(classes, exp.probs[0]),
        "targets": rows,
        "warnings": list(exp.warnings),
        "artifacts": ctx.store_artifacts(artifacts),
    }


def _classic(ctx: JobContext, loaded: LoadedModel, x: torch.Tensor, method: str,
             targets: Targets) -> dict[str, Any]:
    from aex.contract.targets import choose_targets
    from aex.models import ClassicExplainer
    from aex.models.render import colorize, grid_png, heatmap_png, image_png

    classes = loaded.classes
    with torch.no_grad():
        probs = loaded.model(x).softmax(1)[0]
    indices = choose_targets(targets, probs.tolist())
    explainer = ClassicExplainer(loaded.model, method)
    artifacts = {"input.png": image_png(x[0])}
    rows, tiles, labels = [], [x[0]], ["input"]
    for n, index in enumerate(indices):
        heat = explainer.attribute(x, torch.tensor([index], device=x.device))[0]
        name = f"{method}_{index}.png"
        artifacts[name] = heatmap_png(x[0], heat)
        tiles.append(colorize(heat))
        labels.append(f"{classes[index]} {float(probs[index]):.2f}")
        rows.append({
            "class": classes[index], "index": index,
            "probability_before": float(probs[index]), "probability_after": None,
            "perturbation_rms": None, "artifact": name, "difference": None,
        })
        ctx.progress((n + 1) / len(indices))
    artifacts["grid.png"] = grid_png(tiles, labels)
    return {
        "rho": None, "steps": None,
        "predictions": _predictions(classes, probs),
        "targets": rows,
        "warnings": [],
        "artifacts": ctx.store_artifacts(artifacts),
    }


def explain(spec: dict[str, Any]) -> dict[str, Any]:
    """Run an :class:`~aex.contract.jobs.ExplanationJob` on the job's upload.

    Returns an :class:`~aex.contract.results.ExplanationResult` as JSON data.
    """
    ctx = JobContext.current()
    with ctx.running("explanation"):
        job = parse_spec(spec, ExplanationJob)
        loaded = model_cache().get(job.model, job.sha256)
        x, info = _input(ctx, loaded)
        if job.method == "adversarial":
            body = _adversarial(ctx, loaded, x, job)
        else:
            body = _classic(ctx, loaded, x, job.method, job.targets)
        result = {"model": loaded.name, "method": job.method, **info, **body}
        return ExplanationResult.model_validate(result).model_dump(by_alias=True)


def attack(spec: dict[str, Any]) -> dict[str, Any]:
    """Run an :class:`~aex.contract.jobs.AttackJob` on the job's upload: attack the model
    and compare Grad-CAM before and after.

    Returns an :class:`~aex.contract.results.AttackResult` as JSON data.
    """
    from aex.models import attack_comparison
    from aex.models.render import difference_png, heatmap_png, image_png

    ctx = JobContext.current()
    with ctx.running("attack"):
        job = parse_spec(spec, AttackJob)
        mode, eps, steps, target = job.mode, job.eps, job.steps, job.target
        loaded = model_cache().get(job.model, job.sha256)
        x, info = _input(ctx, loaded)
        cmp = attack_comparison(loaded.model, x, mode=mode, target=target,
                                progress=ctx.progress, **_given(eps=eps, steps=steps))
        classes = loaded.classes
        before, after = cmp.probs_before.detach().cpu(), cmp.probs_after.detach().cpu()
        artifacts = {
            "input.png": image_png(x[0]),
            "adversarial.png": image_png(cmp.x_adv[0]),
            "difference.png": difference_png(cmp.delta[0]),
            "gradcam_before.png": heatmap_png(x[0], cmp.gradcam_before),
            "gradcam_after.png": heatmap_png(cmp.x_adv[0].clamp(0, 1), cmp.gradcam_after),
        }
        result = {
            "model": loaded.name, "mode": mode, **info, "eps": eps, "steps": steps,
            "target": None if target is None else _class(classes, target, before[target]),
            "success": bool(cmp.success),
            "perturbation_rms": float(cmp.perturbation_rms),
            "before": _class(classes, cmp.pred_before, before[cmp.pred_before]),
            "after": _class(classes, cmp.pred_after, after[cmp.pred_after]),
            "predictions_before": _predictions(classes, before),
            "predictions_after": _predictions(classes, after),
            "gradcam_similarity": float(cmp.similarity),
            "warnings": list(cmp.warnings),
            "artifacts": ctx.store_artifacts(artifacts),
        }
        return AttackResult.model_validate(result).model_dump(by_alias=True)
