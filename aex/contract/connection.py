"""How the API and the workers connect to Redis (one set of timeouts for both)."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit

from redis import Redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError, ReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

# Redis is away (stopped, restarting, loading its data, unreachable or hung), as opposed
# to answering with an error: the workers wait these out, the API answers 503.
OUTAGE_ERRORS: tuple[type[Exception], ...] = (RedisConnectionError, RedisTimeoutError)
# Redis cannot take writes for now: away, full (maxmemory with noeviction), or a replica
# that became read-only. A worker waits these out too.
UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (*OUTAGE_ERRORS, OutOfMemoryError,
                                                   ReadOnlyError)
# A command that fails on a dropped connection is sent again this many times, quickly:
# enough for the first command after a Redis restart, short of hiding an outage. A
# command that timed out is not sent again (Redis may have run it).
COMMAND_RETRIES = 2


def connect(url: str, *, socket_timeout: float | None = 10.0,
            retries: int = COMMAND_RETRIES) -> Redis:
    """A Redis client that fails fast when the server is away and reconnects by itself."""
    return Redis.from_url(
        url,
        socket_connect_timeout=min(2.0, socket_timeout or 2.0),
        socket_timeout=socket_timeout,
        health_check_interval=15,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries,
                    supported_errors=(RedisConnectionError,)),
    )


def mask_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for logs and messages)."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        credentials, _, host = netloc.rpartition("@")
        user, colon, password = credentials.partition(":")
        netloc = f"{user}:***@{host}" if colon and password else netloc
    query = urlencode([(k, "***" if k.lower() == "password" else v)
                       for k, v in parse_qsl(parts.query, keep_blank_values=True)], safe="*/")
    return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")
