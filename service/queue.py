"""Redis and RQ access for the API: submit, inspect and cancel jobs, read artifacts.

Jobs are enqueued by dotted path with RQ's JSON serializer, so this process never
imports torch and never unpickles anything. The uploaded bytes wait in Redis under
the job's id; results and artifacts come back through Redis too.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from redis import Redis
from rq import Queue, Retry
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from aex.contract import keys
from aex.contract.connection import connect
from aex.contract.jobs import JobSpec, job_function
from aex.contract.settings import Settings

from .exceptions import ConflictError, NotFoundError, QueueFullError

logger = logging.getLogger(__name__)

JOB_ID_PATTERN = re.compile(r"^[0-9a-f]{32}$")
ARTIFACT_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,100}\.png$")
STATUS = {
    JobStatus.CREATED: "queued",
    JobStatus.QUEUED: "queued",
    JobStatus.DEFERRED: "queued",
    JobStatus.SCHEDULED: "queued",
    JobStatus.READY_TO_ENQUEUE: "queued",
    JobStatus.RATE_LIMITED: "queued",
    JobStatus.STARTED: "started",
    JobStatus.FINISHED: "finished",
    JobStatus.FAILED: "failed",
    JobStatus.STOPPED: "canceled",
    JobStatus.CANCELED: "canceled",
}
ABANDONED_MESSAGE = (
    "the worker running this job stopped (killed or lost) and no retries were left"
)


def artifact_path(job_id: str, name: str) -> str:
    """The URL path of one artifact of a job."""
    return f"/v1/jobs/{job_id}/artifacts/{name}"


def job_path(job_id: str) -> str:
    """The URL path of a job's status."""
    return f"/v1/jobs/{job_id}"


def failure_message(job: Job) -> str:
    """A one-line reason for a failed job: the worker's own message, else the exception's."""
    if job.meta.get("error"):
        return str(job.meta["error"])
    result = job.latest_result()
    text = (result.exc_string if result is not None else "") or ""
    if "AbandonedJobError" in text:
        return ABANDONED_MESSAGE
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "the job failed without a message"


class JobQueue:
    """The service's RQ queue plus the Redis keys that travel with each job."""

    def __init__(self, settings: Settings, connection: Redis | None = None) -> None:
        self.settings = settings
        self.connection = connection if connection is not None else connect(settings.redis_url)
        self.queue = Queue(settings.queue_name, connection=self.connection,
                           serializer=JSONSerializer)

    def ping(self) -> bool:
        """Whether Redis answers (raises ``redis.ConnectionError`` when it does not)."""
        return bool(self.connection.ping())

    def depth(self) -> int:
        """Jobs waiting in the queue."""
        return self.queue.count

    def workers_alive(self) -> int:
        """Workers whose last liveness beat has not expired."""
        return int(self.connection.zcount(keys.WORKERS, time.time(), "+inf"))

    def submit(self, spec: JobSpec, upload: bytes) -> Job:
        """Store ``upload`` and enqueue the job ``spec`` (validated when it was built; the
        worker validates it again); ``QueueFullError`` past the limit."""
        kind, model = spec.kind, spec.model
        s = self.settings
        if self.depth() >= s.max_queue:
            raise QueueFullError(
                f"the queue already holds {s.max_queue} jobs; retry in {s.retry_after_s} s",
                headers={"Retry-After": str(s.retry_after_s)},
            )
        job_id = uuid.uuid4().hex
        upload_ttl = s.failure_ttl_s + s.job_timeout_s * (s.job_retries + 1)
        self.connection.set(keys.upload(job_id), upload, ex=upload_ttl)
        job = self.queue.enqueue_call(
            job_function(spec),
            kwargs={"spec": spec.model_dump(mode="json")},
            job_id=job_id,
            timeout=s.job_timeout_s,
            result_ttl=s.result_ttl_s,
            failure_ttl=s.failure_ttl_s,
            retry=Retry(max=s.job_retries) if s.job_retries else None,
            meta={"kind": kind, "model": model, "progress": 0.0},
            description=f"{kind} with model {model}",
        )
        logger.info("enqueued %s job %s (model %s)", kind, job_id, model)
        return job

    def get(self, job_id: str) -> Job:
        """The job with this id; ``NotFoundError`` naming it when there is none."""
        if not JOB_ID_PATTERN.match(job_id):
            raise NotFoundError(f"unknown job {job_id!r}: job ids are 32 hex digits")
        try:
            job = Job.fetch(job_id, connection=self.connection, serializer=JSONSerializer)
        except NoSuchJobError as exc:
            raise NotFoundError(f"unknown job {job_id!r} (it may have expired)") from exc
        if job.origin != self.queue.name or "kind" not in job.meta:
            raise NotFoundError(f"unknown job {job_id!r}")
        return job

    def status(self, job: Job) -> str:
        """The public status of ``job``, read fresh from Redis."""
        return STATUS.get(job.get_status(refresh=True), "queued")

    def view(self, job: Job) -> dict[str, Any]:
        """Everything ``GET /v1/jobs/{id}`` shows about ``job`` (read fresh from Redis)."""
        try:
            job.refresh()
        except NoSuchJobError as exc:
            raise NotFoundError(f"unknown job {job.id!r} (it has expired)") from exc
        status = STATUS.get(job.get_status(refresh=False), "queued")
        meta = job.meta
        view: dict[str, Any] = {
            "id": job.id,
            "kind": meta.get("kind"),
            "status": status,
            "progress": 1.0 if status == "finished" else float(meta.get("progress", 0.0)),
            "model": meta.get("model"),
            "created_at": job.created_at,
            "enqueued_at": job.enqueued_at,
            "started_at": job.started_at if status != "queued" else None,
            "ended_at": job.ended_at if status in ("finished", "failed", "canceled") else None,
            "position": job.get_position() if status == "queued" else None,
            "cancel_requested": bool(self.connection.exists(keys.cancel(job.id))),
            "status_url": job_path(job.id),
            "error": None,
            "result": None,
        }
        if status == "finished":
            result = dict(job.return_value(refresh=True) or {})
            names = result.get("artifacts", [])
            result["artifacts"] = {name: artifact_path(job.id, name) for name in names}
            view["result"] = result
        elif status == "failed":
            view["error"] = failure_message(job)
        elif status == "canceled":
            view["error"] = "the job was canceled"
        return view

    def artifact(self, job_id: str, name: str) -> bytes:
        """The bytes of artifact ``name`` of a job; ``NotFoundError`` naming what is missing."""
        job = self.get(job_id)
        data = None
        if ARTIFACT_PATTERN.match(name):
            data = self.connection.hget(keys.artifacts(job.id), name)
        if not isinstance(data, bytes):
            raise NotFoundError(f"job {job_id!r} has no artifact {name!r}")
        return data

    def cancel(self, job: Job) -> None:
        """Cancel a queued job at once, or ask the worker to stop a running one."""
        status = self.status(job)
        if status == "queued":
            job.cancel()
            self.connection.delete(keys.upload(job.id))
            logger.info("canceled queued job %s", job.id)
        elif status == "started":
            self.connection.set(keys.cancel(job.id), b"1", ex=self.settings.job_timeout_s + 60)
            logger.info("asked the worker to stop job %s", job.id)
        else:
            raise ConflictError(f"job {job.id!r} is already {status}; nothing to cancel")
