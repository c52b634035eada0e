"""How the API and the workers connect to Redis (one set of timeouts for both)."""

from __future__ import annotations

from redis import Redis


def connect(url: str, *, socket_timeout: float | None = 10.0) -> Redis:
    """A Redis client that fails fast when the server is away and reconnects by itself."""
    return Redis.from_url(
        url,
        socket_connect_timeout=2.0,
        socket_timeout=socket_timeout,
        health_check_interval=15,
    )
