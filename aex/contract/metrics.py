"""Job metrics the workers record in Redis and the API exports (names and buckets, once)."""

from __future__ import annotations

from redis import Redis

from . import keys

JOB_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)


def record_job(connection: Redis, kind: str, seconds: float, status: str) -> None:
    """Count one ended job of ``kind`` in Redis (called by the worker)."""
    key = keys.job_metrics(kind)
    with connection.pipeline(transaction=False) as pipe:
        for bound in JOB_BUCKETS:
            if seconds <= bound:
                pipe.hincrby(key, f"le_{bound}", 1)
        pipe.hincrby(key, "count", 1)
        pipe.hincrbyfloat(key, "sum", seconds)
        pipe.hincrby(key, f"status_{status}", 1)
        pipe.execute()
