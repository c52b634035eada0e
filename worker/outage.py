"""Redis outages as a worker process sees them: logged once each, waited out with back-off.

An outage is any time Redis cannot take writes: stopped, restarting, unreachable, hung,
at ``maxmemory``, or read-only.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from redis import Redis

from aex.contract import keys
from aex.contract.connection import UNAVAILABLE_ERRORS

logger = logging.getLogger(__name__)

BACKOFF_FIRST_S = 0.25
BACKOFF_MAX_S = 5.0


class RedisOutage:
    """Whether Redis is unavailable, shared by a worker's threads (main loop, beat, job).

    :meth:`lost` logs the first failure of an outage and :meth:`back` its end, once each,
    however many calls fail in between.
    """

    def __init__(self) -> None:
        self._since: float | None = None
        self._lock = threading.Lock()

    @property
    def ongoing(self) -> bool:
        """Whether the last Redis call of this process failed for want of Redis."""
        return self._since is not None

    def lost(self, exc: BaseException) -> None:
        """A Redis call failed because Redis is away."""
        with self._lock:
            if self._since is None:
                self._since = time.monotonic()
                logger.warning("Redis is unavailable (%s: %.200s); waiting for it to come "
                               "back", type(exc).__name__, exc)

    def back(self) -> None:
        """A Redis call succeeded."""
        with self._lock:
            if self._since is not None:
                logger.warning("Redis is back after %.1f s", time.monotonic() - self._since)
                self._since = None


redis_outage = RedisOutage()
"""This process's view of its Redis (a worker process talks to one Redis)."""


def wait_for_redis(connection: Redis, exc: BaseException,
                   should_stop: Callable[[], bool] = lambda: False) -> bool:
    """Block until Redis takes a write again (``True``), backing off from
    :data:`BACKOFF_FIRST_S` to :data:`BACKOFF_MAX_S`; ``False`` as soon as
    ``should_stop()``. ``exc`` is the failure that showed the outage."""
    redis_outage.lost(exc)
    pause = BACKOFF_FIRST_S
    while not should_stop():
        time.sleep(pause)
        try:
            connection.set(keys.READY_PROBE, b"1", ex=60)
        except UNAVAILABLE_ERRORS:
            pause = min(2 * pause, BACKOFF_MAX_S)
            continue
        redis_outage.back()
        return True
    return False
