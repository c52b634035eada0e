"""``POST /v1/evaluations``: measure a model on the evaluation workers' data, as a job."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field

from aex.contract.jobs import MAX_EVAL_IMAGES, EvaluationJob, EvaluationKind, ExplainMethod

from ..deps import CallerDep, QueueDep, StoreDep
from ..schemas import JobAccepted
from ._common import SUBMIT_RESPONSES, accepted, resolve_model

router = APIRouter(prefix="/evaluations", tags=["evaluations"])


class EvaluationRequest(BaseModel):
    """What to measure. The images are the first ``n_images`` of the seeded evaluation
    order of the folder the evaluation workers are configured with (``AEX_EVAL_DATA``)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"kind": "explainers", "model": "default", "n_images": 20},
        {"kind": "ara", "model": "default", "n_images": 100, "fast": True},
    ]})

    kind: EvaluationKind = Field(
        description="ara: accuracy and both ARAs; explainers: deletion and insertion areas, "
                    "infidelity, max-sensitivity, the randomisation check and counterfactual "
                    "validity of each explanation method")
    model: Annotated[str | None, Field(max_length=64)] = Field(
        None, description="registry name or alias; the default model if omitted")
    n_images: Annotated[int, Field(ge=1, le=MAX_EVAL_IMAGES)] = 100
    fast: bool = Field(True, description="ara: the fast settings (each image's radius "
                                         "refined around a coarse run, about a fifth of "
                                         "the passes) instead of the reference ones "
                                         "(eps 20, 450 steps)")
    methods: Annotated[list[ExplainMethod] | None, Field(min_length=1, max_length=5)] = Field(
        None, description="explainers: the methods to compare (default all five)")


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobAccepted,
    responses=SUBMIT_RESPONSES,
    summary="Measure a model (ARA, or the quality of its explanations) as a job",
)
def create_evaluation(request: Request, response: Response, body: EvaluationRequest,
                      queue: QueueDep, store: StoreDep, caller: CallerDep) -> JobAccepted:
    """Queue an evaluation on the evaluation queue (long evaluations never wait in front of
    explanations) and answer ``202``; on success the figures join the model's metadata."""
    entry = resolve_model(store, body.model)
    spec = EvaluationJob(model=entry.name, sha256=entry.sha256, evaluation=body.kind,
                         n_images=body.n_images, fast=body.fast, methods=body.methods)
    job = queue.submit(spec, None, caller.owner)
    request.app.state.metrics.submitted.labels("evaluation").inc()
    return accepted(response, job.id, "evaluation", entry.name)
