"""The FastAPI application: ``create_app()`` wires settings, queue, store and routers.

Run it with ``uvicorn --factory aex.service.app:create_app`` or ``aex serve``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from redis.exceptions import OutOfMemoryError, RedisError

from aex import __version__
from aex.contract.connection import OUTAGE_ERRORS, mask_url
from aex.contract.settings import Settings, get_settings
from aex.models.store import ModelStore

from .deps import ApiKeyDep
from .exceptions import CONTRACT_STATUS, ServiceError
from .head import HeadMiddleware
from .limits import BodyLimitMiddleware
from .metrics import Metrics, MetricsMiddleware
from .queue import JobQueue
from .routers import (
    attacks,
    comparisons,
    docs,
    evaluations,
    explanations,
    health,
    jobs,
    models,
    web,
)

logger = logging.getLogger(__name__)

DESCRIPTION = """\
Adversarial explanations of image-classifier decisions on robust networks
(Woods, Chen & Teuscher, Nature Machine Intelligence 2019).

Upload an image to `POST /v1/explanations`, `POST /v1/attacks` or `POST /v1/comparisons`
(two models side by side); the answer (`202`) holds a job id. Poll `GET /v1/jobs/{id}`
(or long-poll with `?wait=30`) until the status is `finished`, then fetch the pictures
listed in `result.artifacts`.
When the service has API keys configured, send one in `X-API-Key`: a job, its result and
its pictures are then visible to (and cancellable by) the key that submitted it only.
"""


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "request"


async def _service_error(_: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, ServiceError):
        raise TypeError(f"not a ServiceError: {exc!r}")
    return JSONResponse({"detail": exc.message}, status_code=exc.status_code,
                        headers=exc.headers)


async def _contract_error(_: Request, exc: Exception) -> JSONResponse:
    status = next(code for kind, code in CONTRACT_STATUS.items() if isinstance(exc, kind))
    return JSONResponse({"detail": str(exc)}, status_code=status)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    clean = [{"field": _field(tuple(e.get("loc", ()))), "message": e.get("msg", ""),
              "type": e.get("type", "")} for e in errors]
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in clean) or "invalid request"
    return JSONResponse({"detail": detail, "errors": clean}, status_code=422)


def _redis_error(retry_after: int) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
    """Any Redis failure is the service's, never the client's: 503 with ``Retry-After``."""

    async def handler(_: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, OutOfMemoryError):
            reason = "Redis is out of memory, until results expire"
        elif isinstance(exc, OUTAGE_ERRORS):
            reason = "cannot reach Redis"
        else:
            reason = f"Redis refused the request ({type(exc).__name__})"
        # The first line only, shortened: Redis's errors can quote a command's (binary) data.
        logger.warning("the job queue is unavailable: %s: %.200r", type(exc).__name__,
                       str(exc).splitlines()[0] if str(exc) else "")
        return JSONResponse(
            {"detail": f"the job queue is unavailable ({reason}); retry in {retry_after} s"},
            status_code=503,
            headers={"Retry-After": str(retry_after)},
        )

    return handler


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app from ``settings`` (read from ``AEX_*`` environment variables if None)."""
    settings = settings or get_settings()
    queue = JobQueue(settings)
    app = FastAPI(
        title="aex: adversarial explanations",
        version=__version__,
        description=DESCRIPTION,
        docs_url=None,
        redoc_url=None,
        openapi_tags=[
            {"name": "explanations", "description": "explain a classification"},
            {"name": "attacks", "description": "attack a model, compare Grad-CAM"},
            {"name": "comparisons",
             "description": "two models side by side: explanations, minimal attack, sizes"},
            {"name": "jobs", "description": "status, results, pictures, cancellation"},
            {"name": "models", "description": "the model registry and checkpoints"},
            {"name": "health", "description": "liveness, readiness, metrics"},
        ],
    )
    app.state.settings = settings
    app.state.queue = queue
    app.state.store = ModelStore(settings.model_dir) if settings.model_dir else ModelStore()
    app.state.metrics = Metrics(queue)
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_upload_bytes)
    app.add_middleware(HeadMiddleware)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    for kind in CONTRACT_STATUS:
        app.add_exception_handler(kind, _contract_error)
    app.add_exception_handler(RedisError, _redis_error(settings.retry_after_s))
    for router in (explanations.router, attacks.router, comparisons.router,
                   evaluations.router, jobs.router, models.router):
        app.include_router(router, prefix="/v1", dependencies=[ApiKeyDep])
    app.include_router(health.router)
    # The web page (issue 6): `/` and its files under /static/, outside /v1 and without an
    # API key (they hold no data); the page itself sends the key the person enters.
    app.include_router(web.router)
    app.mount("/static", StaticFiles(directory=web.STATIC_DIR), name="static")
    # The OpenAPI reference pages, with their assets served here (no CDN: works offline).
    app.include_router(docs.router)
    app.mount(docs.ASSETS_PATH, StaticFiles(directory=docs.ASSETS_DIR), name="docs-assets")
    logger.info("aex API ready (Redis %s, queue %r, %d API keys, %d admin keys)",
                mask_url(settings.redis_url), settings.queue_name, len(settings.api_keys),
                len(settings.admin_api_keys))
    return app
