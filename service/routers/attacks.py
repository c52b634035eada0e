"""``POST /v1/attacks``: upload an image, get a job that attacks the model on it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Request, Response, UploadFile, status

from aex.contract.jobs import MAX_ATTACK_EPS, MAX_ATTACK_STEPS, AttackJob, AttackMode

from ..deps import CallerDep, QueueDep, SettingsDep, StoreDep
from ..exceptions import InvalidRequestError
from ..schemas import JobAccepted
from ._common import (
    SUBMIT_RESPONSES,
    CallbackField,
    accepted,
    checked_callback,
    read_upload,
    resolve_class,
    resolve_model,
)

router = APIRouter(prefix="/attacks", tags=["attacks"])


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobAccepted,
    responses=SUBMIT_RESPONSES,
    summary="Attack the model on an image and compare Grad-CAM before and after",
)
def create_attack(
    request: Request,
    response: Response,
    settings: SettingsDep,
    queue: QueueDep,
    store: StoreDep,
    caller: CallerDep,
    image: Annotated[UploadFile, File(description="PNG, JPEG or WebP image")],
    model: Annotated[
        str | None,
        Form(max_length=64, description="registry name or alias; the default model if omitted"),
    ] = None,
    mode: Annotated[
        AttackMode,
        Form(description="l2: bounded by eps; l2min: smallest change of the prediction; "
                         "btr: smallest push of the class below chance"),
    ] = "l2min",
    eps: Annotated[
        float | None,
        Form(gt=0, le=MAX_ATTACK_EPS, allow_inf_nan=False,
             description="RMS budget (l2; default 0.01, the paper's adversarial-training "
                         "budget) or search bound (l2min, btr; default 20)"),
    ] = None,
    steps: Annotated[
        int | None,
        Form(ge=1, le=MAX_ATTACK_STEPS,
             description="routine steps (default 7 for l2, 450 for l2min and btr)"),
    ] = None,
    target: Annotated[
        str | None,
        Form(max_length=200,
             description="l2 mode only: class (name or index) to push the image toward"),
    ] = None,
    callback: CallbackField = None,
) -> JobAccepted:
    """Queue an attack job and answer ``202`` with its id and status URL."""
    callback = checked_callback(callback, settings)
    entry = resolve_model(store, model)
    target_index = None
    if target not in (None, ""):
        if mode != "l2":
            raise InvalidRequestError(
                f"target: a target class can only be given with mode 'l2', not {mode!r}"
            )
        target_index = resolve_class(target, entry)
    spec = AttackJob(model=entry.name, sha256=entry.sha256, mode=mode, eps=eps, steps=steps,
                     target=target_index)
    job = queue.submit(spec, read_upload(image, settings), caller.owner, callback)
    request.app.state.metrics.submitted.labels("attack").inc()
    return accepted(response, job.id, "attack", entry.name)
