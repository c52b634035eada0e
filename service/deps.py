"""FastAPI dependencies as ``Annotated`` aliases: settings, queue, model store, API key."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from aex.contract.settings import Settings
from aex.models.store import ModelStore

from .exceptions import AuthenticationError, ForbiddenError
from .queue import JobQueue


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _queue(request: Request) -> JobQueue:
    return request.app.state.queue


def _store(request: Request) -> ModelStore:
    return request.app.state.store


SettingsDep = Annotated[Settings, Depends(_settings)]
QueueDep = Annotated[JobQueue, Depends(_queue)]
StoreDep = Annotated[ModelStore, Depends(_store)]

api_key_header = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    description="required on every /v1 route when the service has AEX_API_KEYS set",
)


def require_api_key(
    settings: SettingsDep, key: Annotated[str | None, Security(api_key_header)]
) -> None:
    """Pass when no keys are configured or ``X-API-Key`` matches one (constant time)."""
    if not settings.api_keys:
        return
    if not key:
        raise AuthenticationError(
            "this service requires an API key: send it in the X-API-Key header",
            headers={"WWW-Authenticate": "X-API-Key"},
        )
    given = key.encode()
    matched = False
    for candidate in settings.api_keys:
        matched |= hmac.compare_digest(candidate.encode(), given)
    if not matched:
        raise ForbiddenError("the X-API-Key header does not hold a valid API key")


ApiKeyDep = Depends(require_api_key)
