"""``/v1/jobs``: status and results, artifacts, cancellation."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from ..deps import CallerDep, QueueDep, SettingsDep
from ..exceptions import NotFoundError, QueueFullError
from ..queue import MEDIA_TYPES
from ..schemas import JobAccepted, JobView, Problem
from ._common import accepted

router = APIRouter(prefix="/jobs", tags=["jobs"])

# A long poll looks again after 50 ms, then backs off (doubling) to one look a second.
FIRST_POLL_S = 0.05
MAX_POLL_S = 1.0
TERMINAL = ("finished", "failed", "canceled")
EVENT_POLL_S = 0.25  # how often an event stream looks at its job
KEEPALIVE_S = 10.0  # a comment line after this long without events
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


def _event(name: str, data: Any) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, default=str)}\n\n".encode()


@router.get(
    "/{job_id}/events",
    response_class=StreamingResponse,
    responses={**JOB_RESPONSES,
               200: {"content": {"text/event-stream": {}},
                     "description": "server-sent events until the job ends"},
               429: {"model": Problem, "description": "too many open streams; Retry-After"}},
    summary="A job's progress as server-sent events",
)
async def job_events(job_id: JobId, request: Request, queue: QueueDep,
                     settings: SettingsDep, caller: CallerDep) -> StreamingResponse:
    """Server-sent events, each a JSON object: ``queued`` (``position``, 0 = next) while
    it waits, ``progress`` (``status``, ``progress``) as it runs, ``partial`` (one
    finished image of a batch, as in ``partial`` of the job view) as each ends, and last
    ``end``: the job's view (``GET /v1/jobs/{id}``), final status and result included. A
    comment line every few seconds keeps the connection open; a stream ends after the
    job's time limit has passed twice."""
    job = await run_in_threadpool(queue.get, job_id, caller)
    state = request.app.state
    open_streams = getattr(state, "event_streams", 0)
    if open_streams >= settings.max_event_streams:
        raise QueueFullError(
            f"this API process already streams {open_streams} jobs' events "
            f"(AEX_MAX_EVENT_STREAMS); retry in {settings.retry_after_s} s, or poll "
            "GET /v1/jobs/{id}?wait=", headers={"Retry-After": str(settings.retry_after_s)})

    async def stream() -> AsyncIterator[bytes]:
        state.event_streams = getattr(state, "event_streams", 0) + 1
        try:
            async for chunk in events():
                yield chunk
        finally:
            state.event_streams -= 1

    async def events() -> AsyncIterator[bytes]:
        deadline = time.monotonic() + 2 * settings.job_timeout_s + settings.max_wait_s
        sent: dict[str, Any] = {}
        count, quiet = 0, time.monotonic()
        while time.monotonic() < deadline:
            try:
                now = await run_in_threadpool(queue.snapshot, job, count)
            except NotFoundError as exc:
                yield _event("end", {"id": job.id, "status": "expired", "error": str(exc)})
                return
            events = []
            if now["status"] == "queued" and sent.get("position") != now["position"]:
                events.append(_event("queued", {"id": job.id, "position": now["position"]}))
            for entry in now["partial"]:
                events.append(_event("partial", entry))
            count += len(now["partial"])
            state = (now["status"], now["progress"])
            if now["status"] != "queued" and sent.get("state") != state:
                events.append(_event("progress", {"id": job.id, "status": now["status"],
                                                  "progress": now["progress"]}))
            sent.update(position=now["position"], state=state)
            if now["status"] in TERMINAL:
                view = await run_in_threadpool(queue.view, job)
                events.append(_event("end", JobView.model_validate(view).model_dump(
                    mode="json", by_alias=True)))
            for event in events:
                yield event
            if now["status"] in TERMINAL:
                return
            if events:
                quiet = time.monotonic()
            elif time.monotonic() - quiet > KEEPALIVE_S:
                quiet = time.monotonic()
                yield b": keepalive\n\n"
            await asyncio.sleep(EVENT_POLL_S)
        yield _event("end", {"id": job.id, "status": "timeout",
                             "error": "the event stream ended before the job did"})

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


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
    for a batch, the images that finished; for a comparison, the image both models saw:
    409 when they saw it at different sizes). On CPU the new result matches within float
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
