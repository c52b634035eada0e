"""The RQ jobs, enqueued by dotted path (``worker.jobs.explain``, ``worker.jobs.attack``).

Each job reads its upload from Redis, runs the core (``models``) on a cached model,
stores its PNGs in Redis and returns a JSON-serialisable result; the API adds the
artifact URLs. The science lives in ``models``; nothing here re-implements it.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from models import LoadedModel
from models._data import image_tensor
from service.imaging import PreparedImage, open_image, prepare_image
from service.settings import get_settings

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


def model_input(data: bytes, loaded: LoadedModel) -> tuple[torch.Tensor, PreparedImage]:
    """Encoded image bytes as the model's ``(1, C, H, W)`` input in ``[0, 1]`` on its device:
    safely decoded, oriented, converted and resized (``service.imaging``)."""
    channels = len(loaded.meta.get("mean", [0, 0, 0]))
    image = open_image(data, get_settings().max_pixels)
    prepared = prepare_image(image, loaded.input_size, channels)
    return image_tensor(prepared.image).unsqueeze(0).to(loaded.device), prepared


def _input(ctx: JobContext, loaded: LoadedModel) -> tuple[torch.Tensor, dict[str, Any]]:
    """The job's upload as model input, and how it was fitted to the model."""
    x, prepared = model_input(ctx.upload(), loaded)
    info = {
        "input_size": list(loaded.input_size),
        "original_size": list(prepared.original_size),
        "resized": prepared.resized,
    }
    return x, info


def _class(classes: list[str], index: int, probability: float) -> dict[str, Any]:
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
                 targets: str | list[int], rho: float | None,
                 steps: int | None) -> dict[str, Any]:
    from models import AdversarialExplainer
    from models._render import change_label, difference_png, grid_png, image_png

    classes = loaded.classes
    exp = AdversarialExplainer(loaded.model, classes=classes).explain(
        x, targets=targets, progress=ctx.progress, **_given(rho=rho, steps=steps)
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
        })
    artifacts["grid.png"] = grid_png([x[0], *exp.images], ["input", *labels])
    return {
        "rho": rho, "steps": steps,
        "predictions": _predictions(classes, exp.probs[0]),
        "targets": rows,
        "warnings": list(exp.warnings),
        "artifacts": ctx.store_artifacts(artifacts),
    }


def _classic(ctx: JobContext, loaded: LoadedModel, x: torch.Tensor, method: str,
             targets: str | list[int]) -> dict[str, Any]:
    from models import AdversarialExplainer, ClassicExplainer
    from models._render import colorize, grid_png, heatmap_png, image_png

    classes = loaded.classes
    with torch.no_grad():
        probs = loaded.model(x).softmax(1)[0]
    indices = AdversarialExplainer(loaded.model, classes).resolve_targets(targets, probs)
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


def explain(model: str, sha256: str, method: str, targets: str | list[int],
            rho: float | None, steps: int | None) -> dict[str, Any]:
    """Explain the job's upload with ``method`` toward ``targets`` (the API validated them).

    Returns the explanation result of the API contract, artifact names listed.
    """
    ctx = JobContext.current()
    with ctx.running("explanation"):
        loaded = model_cache().get(model, sha256)
        x, info = _input(ctx, loaded)
        if method == "adversarial":
            body = _adversarial(ctx, loaded, x, targets, rho, steps)
        else:
            body = _classic(ctx, loaded, x, method, targets)
        return {"model": loaded.name, "method": method, **info, **body}


def attack(model: str, sha256: str, mode: str, eps: float | None, steps: int | None,
           target: int | None) -> dict[str, Any]:
    """Attack the model on the job's upload and compare Grad-CAM before and after."""
    from models import attack_comparison
    from models._render import difference_png, heatmap_png, image_png

    ctx = JobContext.current()
    with ctx.running("attack"):
        loaded = model_cache().get(model, sha256)
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
        return {
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
