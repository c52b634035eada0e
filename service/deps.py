"""FastAPI dependencies as ``Annotated`` aliases: settings, queue, model store, caller."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from aex.contract.settings import Settings
from aex.models.store import ModelStore

from .exceptions import AuthenticationError, ForbiddenError
from .queue import JobQueue

# The dependencies are ``async`` (they do not block), so FastAPI runs them on the event loop
# and not on the thread pool, which a hung Redis may have filled with waiting requests.


async def _settings(request: Request) -> Settings:
    return request.app.state.settings


async def _queue(request: Request) -> JobQueue:
    return request.app.state.queue


async def _store(request: Request) -> ModelStore:
    return request.app.state.store


SettingsDep = Annotated[Settings, Depends(_settings)]
QueueDep = Annotated[JobQueue, Depends(_queue)]
StoreDep = Annotated[ModelStore, Depends(_store)]

api_key_header = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    description="required on every /v1 route when the service has AEX_API_KEYS set",
)


@dataclass(frozen=True)
class Caller:
    """Who sends a request: ``owner`` is the sha256 of their API key (None when the
    service has no keys); an admin key sees every job."""

    owner: str | None
    admin: bool = False

    def may_see(self, job_owner: str | None) -> bool:
        """Whether this caller may see (and cancel) a job submitted by ``job_owner``."""
        return self.owner is None or self.admin or (
            job_owner is not None and hmac.compare_digest(job_owner, self.owner))


def key_hash(key: str) -> str:
    """What the service stores of an API key (never the key itself)."""
    return hashlib.sha256(key.encode()).hexdigest()


def _matches(key: bytes, candidates: list[str]) -> bool:
    matched = False
    for candidate in candidates:  # constant time, and no early exit
        matched |= hmac.compare_digest(candidate.encode(), key)
    return matched


async def require_api_key(
    settings: SettingsDep, key: Annotated[str | None, Security(api_key_header)]
) -> Caller:
    """The caller, when no keys are configured or ``X-API-Key`` holds one of them."""
    if not settings.keys_required:
        return Caller(owner=None)
    if not key:
        raise AuthenticationError(
            "this service requires an API key: send it in the X-API-Key header",
            headers={"WWW-Authenticate": "X-API-Key"},
        )
    given = key.encode()
    admin = _matches(given, settings.admin_api_keys)
    if not (_matches(given, settings.api_keys) or admin):
        raise ForbiddenError("the X-API-Key header does not hold a valid API key")
    return Caller(owner=key_hash(key), admin=admin)


ApiKeyDep = Depends(require_api_key)
CallerDep = Annotated[Caller, ApiKeyDep]
