"""``POST /v1/explanations``: upload an image, get a job that explains its classification."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Request, Response, UploadFile, status

from aex.contract.jobs import MAX_EXPLAIN_STEPS, MAX_RHO, ExplainMethod, ExplanationJob

from ..deps import CallerDep, QueueDep, SettingsDep, StoreDep
from ..schemas import JobAccepted
from ._common import SUBMIT_RESPONSES, accepted, read_upload, resolve_model, resolve_targets

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
    image: Annotated[UploadFile, File(description="PNG, JPEG or WebP image")],
    model: Annotated[
        str | None,
        Form(max_length=64, description="registry name or alias; the default model if omitted",
             examples=["default"]),
    ] = None,
    method: Annotated[
        ExplainMethod,
        Form(description="adversarial explanations (the paper's), or a classic heat map"),
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
) -> JobAccepted:
    """Queue an explanation job and answer ``202`` with its id and status URL.

    The adversarial method perturbs the image toward each target class with the
    smallest visible change that the robust network needs (method.md §4); the result
    gives each target's probability before and after and links to the images.
    """
    entry = resolve_model(store, model)
    adversarial = method == "adversarial"
    spec = ExplanationJob(
        model=entry.name, sha256=entry.sha256, method=method,
        targets=resolve_targets(targets, entry, settings.max_targets),
        rho=rho if adversarial else None, steps=steps if adversarial else None,
    )
    job = queue.submit(spec, read_upload(image, settings), caller.owner)
    request.app.state.metrics.submitted.labels("explanation").inc()
    return accepted(response, job.id, "explanation", entry.name)
