"""The evaluation job (``aex.contract.jobs.EvaluationJob``), run by evaluation workers
(``aex worker --evaluations``) from their own queue.

The images are the first ``n_images`` of the seeded evaluation order (as ``aex evaluate``
and ``aex benchmark-explainers``) of the worker's ``AEX_EVAL_DATA`` folder; the science is
``aex.models`` (ARA) and ``aex.models.quality`` (the explainer measures). On success the
figures go into the model's metadata in the worker's registry, with their settings and
image count, as the command-line tools write them.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from aex.contract.jobs import EvaluationJob, parse_spec
from aex.contract.results import EvaluationResult
from aex.contract.settings import get_settings
from aex.models import ImageSet, LoadedModel, evaluation_indices, load_image_folder

from .context import JobContext
from .jobs import model_cache

logger = logging.getLogger(__name__)


def _images(loaded: LoadedModel, n_images: int) -> tuple[ImageSet, int]:
    """The evaluation subset of ``AEX_EVAL_DATA`` and the folder's size."""
    folder = get_settings().eval_data
    if folder is None:
        raise LookupError("this worker has no evaluation data: set AEX_EVAL_DATA to an "
                          "ImageFolder tree (<dir>/<class>/*.jpg) on the evaluation worker")
    data = load_image_folder(folder, loaded.input_size[0])
    if data.classes != loaded.classes:
        raise ValueError(f"the evaluation data's classes {data.classes} differ from model "
                         f"{loaded.name!r}'s {loaded.classes}")
    idx = evaluation_indices(len(data), n_images)
    return ImageSet(data.images[idx], data.labels[idx], data.classes), len(data)


def _png(draw: Any, *args: Any) -> bytes:
    """What a plotting function that writes a file draws, as PNG bytes."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "plot.png"
        draw(*args, str(path))
        return path.read_bytes()


def _ara(ctx: JobContext, loaded: LoadedModel, subset: ImageSet, n_data: int,
         job: EvaluationJob) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any],
                                      dict[str, bytes]]:
    from aex.models import FAST_SETTINGS, REFERENCE_SETTINGS, ara, evaluate_accuracy
    from aex.models.render import plot_curves

    settings = dict(FAST_SETTINGS if job.fast else REFERENCE_SETTINGS)
    figures: dict[str, Any] = {"accuracy": evaluate_accuracy(loaded.model, subset)}
    results = []
    x = subset.floats().to(loaded.device)
    for n, (mode, key) in enumerate((("l2min", "ara_attack"), ("btr", "ara_btr"))):
        def progress(fraction: float, done: int = n) -> None:
            ctx.progress((done + fraction) / 2)

        res = ara(loaded.model, x, subset.labels.to(loaded.device), mode=mode,
                  progress=progress, **settings)
        figures[key] = res.value
        results.append(res)
    saved: dict[str, Any] = {"ara_attack": figures["ara_attack"], "ara_btr": figures["ara_btr"],
                             "ara_images": len(subset), "ara_settings": settings}
    if len(subset) == n_data:
        saved.update(accuracy=figures["accuracy"], n_test=n_data)
    curves = _png(lambda path: plot_curves(results, path, title=loaded.name))
    return figures, settings, saved, {"ara.png": curves}


def _explainers(ctx: JobContext, loaded: LoadedModel, subset: ImageSet,
                job: EvaluationJob) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any],
                                             dict[str, bytes]]:
    from aex.contract.jobs import EXPLAIN_METHODS
    from aex.models.quality import (
        BASELINE,
        QualitySettings,
        metrics_summary,
        plot_quality_curves,
        run_benchmark,
        summarise,
    )

    quality = QualitySettings()
    methods = [*dict.fromkeys(job.methods or EXPLAIN_METHODS), BASELINE]
    records = run_benchmark(loaded.model, subset.floats().to(loaded.device), methods, quality,
                            progress=ctx.progress)
    rows = summarise(records)
    settings = {**quality.as_dict(), "chunk_size": 10, "evaluation_seed": 1776,
                "targets": "the predicted class", "methods": methods}
    curves = _png(lambda path: plot_quality_curves(
        rows, path, title=f"{loaded.name}, {len(subset)} images"))
    return rows, settings, {"explainers": metrics_summary(rows, settings)}, {
        "curves.png": curves}


def evaluate(spec: dict[str, Any]) -> dict[str, Any]:
    """Run an :class:`~aex.contract.jobs.EvaluationJob`; an
    :class:`~aex.contract.results.EvaluationResult` as JSON data."""
    from aex.models import update_metrics
    from aex.models.quality import markdown_table

    ctx = JobContext.current()
    with ctx.running("evaluation"):
        began = time.perf_counter()
        job = parse_spec(spec, EvaluationJob)
        cache = model_cache()
        loaded = cache.get(job.model, job.sha256)
        subset, n_data = _images(loaded, job.n_images)
        if job.evaluation == "ara":
            figures, settings, metrics, artifacts = _ara(ctx, loaded, subset, n_data, job)
        else:
            figures, settings, metrics, artifacts = _explainers(ctx, loaded, subset, job)
        warnings = []
        try:
            update_metrics(loaded.name, metrics, store=cache.store)
            if "ara.png" in artifacts:
                cache.store.get(loaded.name).ara_plot_path.write_bytes(artifacts["ara.png"])
            saved = True
        except (ValueError, LookupError, OSError) as exc:
            saved = False
            warnings.append(f"the figures were not saved in the model's metadata: {exc}")
            logger.warning("evaluation %s of %s not saved: %s", ctx.job.id, loaded.name, exc)
        result = {
            "model": loaded.name, "evaluation": job.evaluation, "n_images": len(subset),
            "settings": settings, "figures": figures,
            "table": markdown_table(figures) if job.evaluation == "explainers" else None,
            "saved": saved, "seconds": time.perf_counter() - began, "warnings": warnings,
            "artifacts": ctx.store_artifacts(artifacts),
        }
        return EvaluationResult.model_validate(result).model_dump()
