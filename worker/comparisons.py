"""The comparison job (``aex.contract.jobs.ComparisonJob``): two models side by side on one
upload. The science (``aex.models.explain_and_attack``) measures each model; this module
renders the pictures, stores them under one key per job, and returns the contract's
:class:`~aex.contract.results.ComparisonResult`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from aex.contract.jobs import ComparedModel, ComparisonJob, parse_spec
from aex.contract.results import ComparisonResult
from aex.models import LoadedModel
from aex.models.levels import ChangeSize

from .context import JobContext
from .explaining import Stopwatch, adversarial_settings, make_record, predictions
from .jobs import _class, _given, _input, attack_settings, model_cache

COLUMNS = ("a", "b")


def _size(size: ChangeSize) -> dict[str, Any]:
    return {"rms": size.rms, "rms_levels": size.rms_levels, "max_levels": size.max_levels,
            "visibility": size.visibility}


def _column(ctx: JobContext, prefix: str, loaded: LoadedModel, spec: ComparedModel,
            job: ComparisonJob, progress: Callable[[float], None],
            artifacts: dict[str, bytes]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Measure one model on the upload: its column of the result, and the explanations'
    settings (``rho``, ``steps``); its pictures go into ``artifacts``."""
    from aex.models import ATTACK_EPS, ATTACK_STEPS, explain_and_attack
    from aex.models.render import difference_png, heatmap_png, image_png

    classes = loaded.classes
    x, info = _input(ctx, loaded)
    found = explain_and_attack(loaded.model, x, classes=classes, targets=spec.targets,
                               progress=progress, **_given(rho=job.rho, steps=job.steps))
    exp, attack = found.explanation, found.attack
    name = f"{prefix}-input.png"
    artifacts[name] = image_png(x[0])
    explanations = []
    for row, size in enumerate(found.explanation_sizes):
        index = int(exp.target_index[row])
        picture, difference = (f"{prefix}-explanation_{index}.png",
                               f"{prefix}-difference_{index}.png")
        artifacts[picture] = image_png(exp.images[row])
        artifacts[difference] = difference_png(exp.perturbations[row])
        explanations.append({
            "class": classes[index], "index": index,
            "probability_before": float(exp.prob_before[row]),
            "probability_after": float(exp.prob_after[row]),
            "size": _size(size), "artifact": picture, "difference": difference,
        })
    before, after = attack.probs_before.detach().cpu(), attack.probs_after.detach().cpu()
    shown = attack.x_adv[0].clamp(0, 1)
    attack_names = {key: f"{prefix}-{key}.png" for key in
                    ("adversarial", "attack_difference", "gradcam_before", "gradcam_after")}
    artifacts[attack_names["adversarial"]] = image_png(shown)
    artifacts[attack_names["attack_difference"]] = difference_png(shown - x[0])
    artifacts[attack_names["gradcam_before"]] = heatmap_png(x[0], attack.gradcam_before)
    artifacts[attack_names["gradcam_after"]] = heatmap_png(shown, attack.gradcam_after)
    column = {
        "column": prefix, "model": loaded.name, **info, "input": name,
        "predictions": predictions(classes, found.probs),
        "explanations": explanations,
        "attack": {
            "mode": "l2min", "eps": ATTACK_EPS, "steps": ATTACK_STEPS,
            "success": bool(attack.success),
            "before": _class(classes, attack.pred_before, before[attack.pred_before]),
            "after": _class(classes, attack.pred_after, after[attack.pred_after]),
            "size": _size(found.attack_size),
            "gradcam_similarity": float(attack.similarity),
            "adversarial": attack_names["adversarial"],
            "difference": attack_names["attack_difference"],
            "gradcam_before": attack_names["gradcam_before"],
            "gradcam_after": attack_names["gradcam_after"],
        },
        "caption": found.caption,
        "warnings": [*exp.warnings, *attack.warnings],
    }
    return column, {"rho": found.rho, "steps": found.steps}


def compare(spec: dict[str, Any]) -> dict[str, Any]:
    """Run a :class:`~aex.contract.jobs.ComparisonJob` on the job's upload.

    Returns a :class:`~aex.contract.results.ComparisonResult` as JSON data, with the
    record of how it was made (its ``model`` and ``sha256``: both columns', joined by
    ``" vs "``).
    """
    from aex.models import ATTACK_EPS, ATTACK_STEPS

    ctx = JobContext.current()
    with ctx.running("comparison"):
        watch = Stopwatch()
        job = parse_spec(spec, ComparisonJob)
        loaded = [model_cache().get(c.model, c.sha256) for c in job.columns]
        watch.lap("load_s")
        artifacts: dict[str, bytes] = {}
        columns: list[dict[str, Any]] = []
        settings: dict[str, Any] = {}
        for n, (prefix, model, column) in enumerate(zip(COLUMNS, loaded, job.columns,
                                                        strict=True)):
            def progress(fraction: float, _n: int = n) -> None:
                ctx.progress((_n + fraction) / len(COLUMNS))

            measured, settings = _column(ctx, prefix, model, column, job, progress, artifacts)
            columns.append(measured)
        watch.lap("compare_s")
        names = ctx.store_artifacts(artifacts)
        watch.lap("store_s")
        made = {"adversarial": adversarial_settings(settings["rho"], settings["steps"]),
                "attack": attack_settings("l2min", ATTACK_EPS, ATTACK_STEPS, None)}
        inputs = [hashlib.sha256(artifacts[c["input"]]).hexdigest() for c in columns]
        record = {**make_record("comparison", job.model_dump(mode="json"), loaded[0],
                                job.columns[0].sha256, made, None, inputs, watch.timings),
                  "model": job.model, "sha256": " vs ".join(c.sha256 for c in job.columns)}
        result = {**settings, "columns": columns, "record": record, "artifacts": names}
        return ComparisonResult.model_validate(result).model_dump(by_alias=True)
