"""``POST /v1/comparisons``: upload an image, get one job that puts two models side by side
on it (explanations toward chosen classes, the minimal attack with Grad-CAM, the sizes)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Request, Response, UploadFile, status
from pydantic import StringConstraints

from aex.contract.jobs import (
    MAX_EXPLAIN_STEPS,
    MAX_RHO,
    MAX_TARGET_SELECTIONS,
    ComparedModel,
    ComparisonJob,
)
from aex.contract.settings import Settings
from aex.models.store import CheckpointEntry

from ..deps import CallerDep, QueueDep, SettingsDep, StoreDep
from ..exceptions import InvalidRequestError
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

router = APIRouter(prefix="/comparisons", tags=["comparisons"])

DEFAULT_A, DEFAULT_B = "standard", "default"
DEFAULT_TARGETS = ["predicted", "second"]
TargetText = Annotated[str, StringConstraints(max_length=4000)]


def _column(entry: CheckpointEntry, selections: list[str], settings: Settings) -> ComparedModel:
    """One column of the job: the model and each selection resolved against its classes."""
    resolved = [resolve_targets(text, entry, settings.max_targets) for text in selections]
    listed = sum(len(r) for r in resolved if isinstance(r, list))
    if listed > settings.max_targets:
        raise InvalidRequestError(
            f"targets: {listed} classes listed; at most {settings.max_targets} are allowed")
    return ComparedModel(model=entry.name, sha256=entry.sha256, targets=resolved)


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobAccepted,
    responses=SUBMIT_RESPONSES,
    summary="Two models side by side on one image: explanations and the minimal attack",
)
def create_comparison(
    request: Request,
    response: Response,
    settings: SettingsDep,
    queue: QueueDep,
    store: StoreDep,
    caller: CallerDep,
    image: Annotated[UploadFile, File(description="PNG, JPEG or WebP image")],
    model_a: Annotated[
        str,
        Form(max_length=64, description=f"registry name or alias of the first column "
                                        f"(empty: {DEFAULT_A})", examples=[DEFAULT_A]),
    ] = DEFAULT_A,
    model_b: Annotated[
        str,
        Form(max_length=64, description=f"registry name or alias of the second column "
                                        f"(empty: {DEFAULT_B})", examples=[DEFAULT_B]),
    ] = DEFAULT_B,
    targets: Annotated[
        list[TargetText],
        Form(min_length=1, max_length=MAX_TARGET_SELECTIONS,
             description="repeat the field for several selections, each a word (predicted, "
                         "second, true = predicted, all) or class names/indices ('cat,dog,3' "
                         "or '[\"cat\", 3]'); the union is explained. Default: the predicted "
                         "class and the second most likely, of each model"),
    ] = DEFAULT_TARGETS,
    rho: Annotated[
        float,
        Form(gt=0, le=MAX_RHO, allow_inf_nan=False,
             description="RMS budget ρ of each explanation"),
    ] = 0.1,
    steps: Annotated[
        int,
        Form(ge=1, le=MAX_EXPLAIN_STEPS, description="steps of each explanation"),
    ] = 35,
    callback: CallbackField = None,
) -> JobAccepted:
    """Queue one comparison job and answer ``202`` with its id and status URL.

    For each of the two models, on the same image, the job computes the prediction, the
    adversarial explanations toward the chosen classes (ρ, clipped for display), the
    minimal attack (``l2min``, the science's default settings) with Grad-CAM before and
    after, the size of each change in 0–255 levels (RMS and largest) and a caption that
    states what was measured. Pictures of model A are named ``a-*.png``, of B ``b-*.png``.
    """
    callback = checked_callback(callback, settings)
    first = _column(resolve_model(store, model_a or DEFAULT_A), targets, settings)
    second = _column(resolve_model(store, model_b or DEFAULT_B), targets, settings)
    spec = ComparisonJob(columns=(first, second), rho=rho, steps=steps)
    job = queue.submit(spec, read_upload(image, settings), caller.owner, callback)
    request.app.state.metrics.submitted.labels("comparison").inc()
    return accepted(response, job.id, "comparison", spec.model)
