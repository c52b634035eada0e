"""``/v1/jobs``: status and results, artifacts, cancellation."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response
from starlette.concurrency import run_in_threadpool

from ..deps import CallerDep, QueueDep, SettingsDep
from ..queue import MEDIA_TYPES
from ..schemas import JobAccepted, JobView, Problem
from ._common import accepted

router = APIRouter(prefix="/jobs", tags=["jobs"])

# A long poll looks again after 50 ms, then backs off (doubling) to one look a second.
FIRST_POLL_S = 0.05
MAX_POLL_S = 1.0
TERMINAL = ("finished", "failed", "canceled")
JobId = Annotated[str, Path(max_length=64, description="the id a submission returned")]
JOB_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "unknown job (or another API key's)"},
    503: {"model": Problem, "description": "Redis unreachable"},
}


@router.get("/{job_id}", response_model=JobView, responses=JOB_RESPONSES,
            summary="A job's status, progress and result")
async def get_job(
    job_id: JobId,
    queue: QueueDep,
    settings: SettingsDep,
    caller: CallerDep,
    wait: Annotated[
        float,
        Query(ge=0, le=600, allow_inf_nan=False,
              description="seconds to wait for the job to end before answering (long poll; "
                          "capped by the server's AEX_MAX_WAIT_S)"),
    ] = 0,
) -> dict[str, Any]:
    """Status (queued, started, finished, failed, canceled), progress, timestamps and,
    once finished, the result with links to its artifacts."""
    job = await run_in_threadpool(queue.get, job_id, caller)
    deadline = time.monotonic() + min(wait, settings.max_wait_s)
    pause = FIRST_POLL_S
    while (
        time.monotonic() < deadline
        and await run_in_threadpool(queue.status, job) not in TERMINAL
    ):
        await asyncio.sleep(min(pause, max(0.0, deadline - time.monotonic())))
        pause = min(2 * pause, MAX_POLL_S)
    return await run_in_threadpool(queue.view, job)


@router.delete("/{job_id}", response_model=JobView,
               responses={**JOB_RESPONSES, 409: {"model": Problem, "description": "job ended"}},
               summary="Cancel a job")
def cancel_job(job_id: JobId, queue: QueueDep, caller: CallerDep) -> dict[str, Any]:
    """Cancel a queued job at once; a running job stops at its next progress step
    (``cancel_requested`` is true until then)."""
    job = queue.get(job_id, caller)
    queue.cancel(job)
    return queue.view(job)


@router.post("/{job_id}/rerun", status_code=202, response_model=JobAccepted,
             responses={**JOB_RESPONSES,
                        409: {"model": Problem, "description": "not finished, or no record"},
                        429: {"model": Problem, "description": "queue full; see Retry-After"}},
             summary="Make a finished job's result again from its record")
def rerun_job(job_id: JobId, response: Response, queue: QueueDep,
              caller: CallerDep) -> JobAccepted:
    """Submit a new job with the finished job's ``result.record``: the same model weights
    (by sha256), method settings and seed, on the same model inputs (its ``input.png``;
    for a batch, the images that finished). On CPU the new result matches within float
    rounding."""
    job = queue.get(job_id, caller)
    new = queue.rerun(job, caller)
    return accepted(response, new.id, str(new.meta["kind"]), str(new.meta["model"]))


@router.get(
    "/{job_id}/artifacts/{name}",
    response_class=Response,
    responses={**JOB_RESPONSES, 200: {"content": {"image/png": {},
                                                  "application/octet-stream": {}},
                                      "description": "PNG, .npy or safetensors"}},
    summary="One picture or array of a finished job",
)
def get_artifact(
    job_id: JobId,
    name: Annotated[str, Path(max_length=120, examples=["grid.png"])],
    queue: QueueDep,
    caller: CallerDep,
) -> Response:
    """A PNG, ``.npy`` array or safetensors file named in the job's ``result.artifacts``
    (a running batch's finished images: in ``partial``)."""
    data = queue.artifact(job_id, name, caller)
    return Response(data, media_type=MEDIA_TYPES[name.rsplit(".", 1)[-1]],
                    headers={"Cache-Control": "private, max-age=3600"})
