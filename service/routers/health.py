"""``/healthz``, ``/readyz`` and ``/metrics`` (outside ``/v1``; no API key needed)."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.exceptions import OutOfMemoryError, RedisError

from aex.contract.connection import OUTAGE_ERRORS

from ..deps import QueueDep
from ..schemas import Health

logger = logging.getLogger(__name__)
router = APIRouter(tags=["health"])

OUT_OF_MEMORY = ("Redis is out of memory (maxmemory): no job can be queued until results "
                 "expire or Redis gets more memory")


@router.get("/healthz", response_model=Health, summary="The API process is up")
async def healthz() -> Health:
    """Always ``ok`` while the process answers: it touches no Redis and, running on the
    event loop, waits for no thread that a hung Redis may be holding."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health,
            responses={503: {"model": Health, "description": "not ready"}},
            summary="Redis takes writes and at least one worker is alive")
async def readyz(queue: QueueDep) -> Response:
    """``200`` when jobs can be queued and run, else ``503`` saying what is missing.

    The check runs on its own thread (not the pool that requests share), so a hung
    Redis holding every request thread still gets an answer within seconds.
    """
    try:
        ready = await asyncio.to_thread(queue.readiness)
    except OutOfMemoryError as exc:
        logger.warning("readyz: Redis is out of memory: %s", exc)
        body = Health(status="unavailable", redis=True, detail=OUT_OF_MEMORY)
        return JSONResponse(body.model_dump(), status_code=503)
    except OUTAGE_ERRORS as exc:
        logger.warning("readyz: Redis unreachable: %s", exc)
        body = Health(status="unavailable", redis=False, detail=f"Redis unreachable: {exc}")
        return JSONResponse(body.model_dump(), status_code=503)
    except RedisError as exc:
        logger.warning("readyz: Redis refuses writes: %s", exc)
        body = Health(status="unavailable", redis=True, detail=f"Redis refuses writes: {exc}")
        return JSONResponse(body.model_dump(), status_code=503)
    problem = None
    if ready.memory_full:
        problem = OUT_OF_MEMORY
    elif ready.workers == 0:
        problem = "no worker is alive: start one with `aex worker`"
    if problem:
        body = Health(status="unavailable", redis=True, workers=ready.workers,
                      queue_depth=ready.depth, detail=problem)
        return JSONResponse(body.model_dump(), status_code=503)
    body = Health(status="ok", redis=True, workers=ready.workers, queue_depth=ready.depth)
    return JSONResponse(body.model_dump())


@router.get("/metrics", response_class=Response, summary="Prometheus metrics",
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
def metrics(request: Request) -> Response:
    """Requests, queue depth, jobs by state, live workers and job durations by kind."""
    data = generate_latest(request.app.state.metrics.registry)
    return Response(data, media_type=CONTENT_TYPE_LATEST)
