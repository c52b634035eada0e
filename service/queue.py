"""Redis and RQ access for the API: submit, inspect and cancel jobs, read artifacts.

Jobs are enqueued by dotted path with RQ's JSON serializer, so this process never
imports torch and never unpickles anything. The uploaded bytes wait in Redis under
the job's id; results and artifacts come back through Redis too.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from redis import Redis
from redis.exceptions import WatchError
from rq import Queue, Retry
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from aex.contract import keys, webhooks
from aex.contract.connection import connect
from aex.contract.errors import InvalidJobError
from aex.contract.jobs import (
    EVALUATION_KINDS,
    SPEC_TYPES,
    BatchExplanationJob,
    ComparisonJob,
    JobSpec,
    job_function,
)
from aex.contract.settings import Settings

from .exceptions import ConflictError, NotFoundError, QueueFullError, UnavailableError
from .limits import FORM_OVERHEAD

if TYPE_CHECKING:
    from .deps import Caller

logger = logging.getLogger(__name__)

JOB_ID_PATTERN = re.compile(r"[0-9a-f]{32}")
ARTIFACT_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,100}\.(png|npy|safetensors)")
MEDIA_TYPES = {"png": "image/png", "npy": "application/octet-stream",
               "safetensors": "application/octet-stream"}
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
# A submission whose queue-length check another submission (or a worker) keeps
# invalidating tries again for at most this long before answering 503.
SUBMIT_CONTENTION_S = 5.0
# How long /readyz waits for Redis before calling it unreachable.
READY_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class Readiness:
    """Whether jobs can be queued and run: live workers, waiting jobs, and whether Redis
    (at ``maxmemory``) lacks the room for one more upload of the largest size."""

    workers: int
    depth: int
    memory_full: bool


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
        self.evaluation_queue = Queue(settings.evaluation_queue_name,
                                      connection=self.connection, serializer=JSONSerializer)
        self._probe = connect(settings.redis_url, socket_timeout=READY_TIMEOUT_S, retries=1)

    def readiness(self) -> Readiness:
        """What ``/readyz`` reports, once Redis answers and takes a write.

        Uses its own connection with a short timeout, so a hung Redis is reported within
        seconds. Raises ``redis.RedisError`` (``OutOfMemoryError`` past ``maxmemory``,
        ``ReadOnlyError`` on a replica ...).
        """
        self._probe.set(keys.READY_PROBE, b"1", ex=60)
        memory = self._probe.info("memory")
        limit = int(memory.get("maxmemory", 0))
        room = limit - int(memory.get("used_memory", 0)) if limit else None
        return Readiness(
            workers=int(self._probe.zcount(keys.WORKERS, time.time(), "+inf")),
            depth=int(self._probe.llen(self.queue.key)),
            memory_full=room is not None and room < self.settings.max_upload_bytes + FORM_OVERHEAD,
        )

    def depth(self) -> int:
        """Jobs waiting in the queue."""
        return self.queue.count

    def workers_alive(self) -> int:
        """Workers whose last liveness beat has not expired."""
        return int(self.connection.zcount(keys.WORKERS, time.time(), "+inf"))

    def submit(self, spec: JobSpec, upload: bytes | list[bytes] | None,
               owner: str | None = None, callback: str | None = None) -> Job:
        """Store ``upload`` (a batch's: one per image, in order; evaluations have none) and
        enqueue the job ``spec`` (validated when it was built; the worker validates it
        again) for the caller whose key hashes to ``owner``, with its webhook ``callback``
        URL (checked). Evaluations go to their own queue, with their own time limit.

        The queue-length check and the enqueue are one transaction (``WATCH`` on the
        queue), so concurrent submissions never overshoot ``max_queue``: past it,
        ``QueueFullError``.
        """
        kind, model = spec.kind, spec.model
        s = self.settings
        evaluation = kind in EVALUATION_KINDS
        queue = self.evaluation_queue if evaluation else self.queue
        job_id = uuid.uuid4().hex
        job = queue.create_job(
            job_function(spec),
            kwargs={"spec": spec.model_dump(mode="json")},
            job_id=job_id,
            timeout=s.eval_timeout_s if evaluation else s.job_timeout_s,
            result_ttl=s.result_ttl_s,
            failure_ttl=s.failure_ttl_s,
            retry=Retry(max=s.job_retries) if s.job_retries else None,
            meta={"kind": kind, "model": model, "progress": 0.0, "owner": owner,
                  "callback": callback},
            description=f"{kind} with model {model}",
        )
        deadline = time.monotonic() + SUBMIT_CONTENTION_S
        with self.connection.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(queue.key)
                    if int(pipe.llen(queue.key)) >= s.max_queue:
                        raise QueueFullError(
                            f"the queue already holds {s.max_queue} jobs; "
                            f"retry in {s.retry_after_s} s",
                            headers={"Retry-After": str(s.retry_after_s)},
                        )
                    pipe.multi()
                    if isinstance(upload, list):
                        pipe.hset(keys.upload(job_id),
                                  mapping={str(n): data for n, data in enumerate(upload)})
                        pipe.expire(keys.upload(job_id), s.upload_ttl_s)
                    elif upload is not None:
                        pipe.set(keys.upload(job_id), upload, ex=s.upload_ttl_s)
                    pipe.set(keys.known(job_id), (owner or "").encode(), ex=s.known_id_ttl_s)
                    queue.enqueue_job(job, pipeline=pipe)
                    pipe.execute()
                    break
                except WatchError:
                    if time.monotonic() > deadline:
                        raise UnavailableError(
                            f"the queue is too busy to take the job; retry in "
                            f"{s.retry_after_s} s",
                            headers={"Retry-After": str(s.retry_after_s)},
                        ) from None
        logger.info("enqueued %s job %s (model %s)", kind, job_id, model)
        return job

    def get(self, job_id: str, caller: Caller) -> Job:
        """The job with this id, if ``caller`` may see it; ``NotFoundError`` naming it when
        there is none (saying so when it existed and expired)."""
        if not JOB_ID_PATTERN.fullmatch(job_id):
            raise NotFoundError(f"unknown job {job_id!r}: job ids are 32 hex digits")
        try:
            job = Job.fetch(job_id, connection=self.connection, serializer=JSONSerializer)
        except NoSuchJobError:
            job = None
        origins = (self.queue.name, self.evaluation_queue.name)
        if job is None or job.origin not in origins or "kind" not in job.meta:
            owner = self.connection.get(keys.known(job_id))
            if isinstance(owner, bytes) and caller.may_see(owner.decode() or None):
                s = self.settings
                raise NotFoundError(
                    f"job {job_id!r} has expired: results are kept {s.result_ttl_s} s and "
                    f"failures {s.failure_ttl_s} s after the job ends"
                )
            raise NotFoundError(f"unknown job {job_id!r}")
        if not caller.may_see(job.meta.get("owner")):
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
            raise NotFoundError(f"job {job.id!r} has expired") from exc
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
            "partial": None,
        }
        if status == "finished":
            result = dict(job.return_value(refresh=True) or {})
            names = result.get("artifacts", [])
            result["artifacts"] = {name: artifact_path(job.id, name) for name in names}
            view["result"] = result
        elif meta.get("kind") == "batch":
            view["partial"] = [json.loads(entry) for entry in
                               self.connection.lrange(keys.partial(job.id), 0, -1)]
        if status == "failed":
            view["error"] = failure_message(job)
        elif status == "canceled":
            view["error"] = "the job was canceled"
        return view

    def snapshot(self, job: Job, partial_from: int) -> dict[str, Any]:
        """What a job's event stream needs now: status, progress, queue position, and a
        batch's image results from number ``partial_from`` on (cheaper than :meth:`view`)."""
        try:
            job.refresh()
        except NoSuchJobError as exc:
            raise NotFoundError(f"job {job.id!r} has expired") from exc
        status = STATUS.get(job.get_status(refresh=False), "queued")
        partial: list[dict[str, Any]] = []
        if job.meta.get("kind") == "batch":
            partial = [json.loads(entry) for entry in
                       self.connection.lrange(keys.partial(job.id), partial_from, -1)]
        return {
            "status": status,
            "progress": 1.0 if status == "finished" else float(job.meta.get("progress", 0.0)),
            "position": job.get_position() if status == "queued" else None,
            "partial": partial,
        }

    def rerun(self, job: Job, caller: Caller) -> Job:
        """Submit a finished job again from its record: the same specification (model
        weights, method settings, seed) on the same model inputs (its ``input.png``s)."""
        if self.status(job) != "finished":
            raise ConflictError(f"job {job.id!r} has not finished; only a finished job's "
                                "result records how to make it again")
        result = dict(job.return_value(refresh=True) or {})
        record = result.get("record")
        spec_type = SPEC_TYPES.get(str((record or {}).get("kind")))
        if not record or spec_type is None:
            raise ConflictError(f"job {job.id!r} has no record of how it was made "
                                f"({job.meta.get('kind')} jobs do not keep one)")
        try:
            spec = spec_type.model_validate(record["spec"])
        except ValidationError as exc:
            raise InvalidJobError(f"the record of job {job.id!r} is not a valid "
                                  f"specification: {exc}") from exc
        if isinstance(spec, BatchExplanationJob):
            done = [image for image in result.get("images", []) if image.get("input")]
            if not done:
                raise ConflictError(f"no image of batch {job.id!r} finished: nothing to rerun")
            spec = spec.model_copy(update={"images": [spec.images[image["index"]]
                                                      for image in done]})
            upload: bytes | list[bytes] = [self.artifact(job.id, image["input"], caller)
                                           for image in done]
        elif isinstance(spec, ComparisonJob):
            upload = self._comparison_input(job, result, caller)
        else:
            upload = self.artifact(job.id, "input.png", caller)
        return self.submit(spec, upload, caller.owner)

    def _comparison_input(self, job: Job, result: dict[str, Any], caller: Caller) -> bytes:
        """The one upload that gives both columns of a comparison the inputs they saw: the
        first column's ``input.png``, when the second saw the same image (else 409)."""
        first, second = (self.artifact(job.id, str(column["input"]), caller)
                         for column in result["columns"])
        if first != second:
            raise ConflictError(f"the two models of comparison {job.id!r} saw the image at "
                                "different sizes or colour channels, so no one input makes "
                                "both again; submit the original image to POST "
                                "/v1/comparisons with the record's settings")
        return first

    def artifact(self, job_id: str, name: str, caller: Caller) -> bytes:
        """The bytes of artifact ``name`` of a job; ``NotFoundError`` naming what is missing."""
        job = self.get(job_id, caller)
        data = None
        if ARTIFACT_PATTERN.fullmatch(name):
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
            if job.meta.get("callback"):  # a worker's sender delivers it
                self.connection.zadd(keys.WEBHOOKS, {
                    webhooks.delivery(job.id, job.meta["callback"]): time.time()})
            logger.info("canceled queued job %s", job.id)
        elif status == "started":
            self.connection.set(keys.cancel(job.id), b"1", ex=self.settings.job_timeout_s + 60)
            logger.info("asked the worker to stop job %s", job.id)
        else:
            raise ConflictError(f"job {job.id!r} is already {status}; nothing to cancel")
