"""What a running job needs from Redis: its upload, progress, cancellation, artifacts.

Progress reports ride out a Redis outage (the job goes on, unable to see a cancellation
until Redis is back); everything else that needs Redis raises, and the worker hands the
job back to the queue once Redis answers again (``aex.worker.main``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from redis import Redis
from rq import get_current_job
from rq.job import Job
from rq.timeouts import JobTimeoutException

from aex.contract import keys
from aex.contract.connection import UNAVAILABLE_ERRORS
from aex.contract.metrics import record_job
from aex.contract.settings import UPLOAD_TTL_MARGIN_S

from .outage import redis_outage

logger = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 0.2
ARTIFACT_TTL_MARGIN_S = 60


class JobCanceledError(Exception):
    """A client asked to cancel this job while it ran."""


class JobContext:
    """The current RQ job seen from the code that runs it."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.connection: Redis = job.connection
        self._last_report = 0.0

    @classmethod
    def current(cls) -> JobContext:
        """The context of the job this worker is running."""
        job = get_current_job()
        if job is None:
            raise RuntimeError("not inside an RQ job")
        return cls(job)

    def upload(self, index: int | None = None) -> bytes:
        """The image bytes the client uploaded (image ``index`` of a batch)."""
        key = keys.upload(self.job.id)
        data = self.connection.get(key) if index is None else self.connection.hget(
            key, str(index))
        if not isinstance(data, bytes):
            raise LookupError(
                f"the upload of job {self.job.id} has expired: an upload waits for its job "
                f"AEX_JOB_TIMEOUT_S plus {UPLOAD_TTL_MARGIN_S} s, renewed only while a worker "
                "is alive; submit the image again"
            )
        return data

    def progress(self, fraction: float) -> None:
        """Record progress in ``job.meta`` (throttled) and stop if the job was canceled.

        While Redis is away this does nothing (the worker's beat sees when it is back).
        """
        now = time.monotonic()
        if fraction < 1.0 and now - self._last_report < PROGRESS_INTERVAL_S:
            return
        self._last_report = now
        self.job.meta["progress"] = round(min(max(float(fraction), 0.0), 1.0), 4)
        if redis_outage.ongoing:
            return
        try:
            canceled = bool(self.connection.exists(keys.cancel(self.job.id)))
            if not canceled:
                self.job.save_meta()
        except UNAVAILABLE_ERRORS as exc:
            redis_outage.lost(exc)
            return
        if canceled:
            self.job.meta["canceled"] = True
            raise JobCanceledError(f"job {self.job.id} was canceled")

    def store_artifacts(self, artifacts: dict[str, bytes], replace: bool = True) -> list[str]:
        """Put artifacts into Redis under the job, expiring with its result; their names.

        ``replace`` drops what an earlier run of the job stored; a batch adds each image's
        artifacts to those of the images before it.
        """
        ttl = int(self.job.result_ttl or 0) + ARTIFACT_TTL_MARGIN_S
        key = keys.artifacts(self.job.id)
        with self.connection.pipeline() as pipe:
            if replace:
                pipe.delete(key)
            for name, data in artifacts.items():
                pipe.hset(key, name, data)
            pipe.expire(key, ttl)
            pipe.execute()
        return list(artifacts)

    def clear_partial(self) -> None:
        """Forget the partial results of an earlier run of this job."""
        self.connection.delete(keys.partial(self.job.id))

    def publish_partial(self, entry: dict[str, Any]) -> None:
        """Make one image's result visible while the job runs (``GET /v1/jobs/{id}``)."""
        key = keys.partial(self.job.id)
        ttl = int(self.job.result_ttl or 0) + ARTIFACT_TTL_MARGIN_S
        with self.connection.pipeline() as pipe:
            pipe.rpush(key, json.dumps(entry))
            pipe.expire(key, ttl)
            pipe.execute()

    @contextmanager
    def running(self, kind: str) -> Iterator[None]:
        """Time the job, record the outcome, and leave a readable ``meta["error"]``.

        A Redis outage is not the job's outcome: nothing is recorded (the job runs again).
        """
        start = time.perf_counter()
        status = "failed"
        try:
            yield
            status = "finished"
        except UNAVAILABLE_ERRORS:
            status = "interrupted"
            raise
        except JobCanceledError:
            status = "canceled"
            raise
        except JobTimeoutException as exc:
            self.job.meta["error"] = (
                f"the job exceeded its time limit of {self.job.timeout} s; "
                "ask for fewer targets or steps, or raise AEX_JOB_TIMEOUT_S"
            )
            logger.warning("job %s timed out: %s", self.job.id, exc)
            raise
        except (ValueError, LookupError) as exc:
            self.job.meta["error"] = str(exc)
            raise
        except Exception as exc:
            self.job.meta["error"] = f"internal error in the worker: {type(exc).__name__}: {exc}"
            logger.exception("job %s failed", self.job.id)
            raise
        finally:
            seconds = time.perf_counter() - start
            if status != "interrupted":
                self.job.save_meta()
                record_job(self.connection, kind, seconds, status)
            logger.info("%s job %s %s in %.2f s", kind, self.job.id, status, seconds)
