"""``/v1/jobs``: status and results, artifacts, cancellation."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response
from starlette.concurrency import run_in_threadpool

from ..deps import CallerDep, QueueDep, SettingsDep
from ..schemas import JobView, Problem

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


@router.get(
    "/{job_id}/artifacts/{name}",
    response_class=Response,
    responses={**JOB_RESPONSES, 200: {"content": {"image/png": {}}, "description": "PNG"}},
    summary="One picture of a finished job",
)
def get_artifact(
    job_id: JobId,
    name: Annotated[str, Path(max_length=120, examples=["grid.png"])],
    queue: QueueDep,
    caller: CallerDep,
) -> Response:
    """A PNG named in the job's ``result.artifacts``."""
    data = queue.artifact(job_id, name, caller)
    return Response(data, media_type="image/png",
                    headers={"Cache-Control": "private, max-age=3600"})
