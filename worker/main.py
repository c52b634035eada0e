"""The worker process: a non-forking RQ worker that keeps models loaded.

RQ's default worker forks a child per job, which throws the loaded model away and
does not mix with CUDA. :class:`ModelWorker` runs jobs in its own process, beats a
liveness signal (for ``/readyz`` and for spotting dead workers), and retries only
jobs whose worker died; a job that raises fails at once with its message.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Any

from redis.exceptions import RedisError
from rq import Queue, SimpleWorker
from rq.executions import Execution
from rq.job import Job
from rq.serializers import JSONSerializer
from rq.worker import WorkerStatus

from aex.contract import keys
from aex.contract.connection import connect
from aex.contract.settings import Settings

logger = logging.getLogger(__name__)


class ModelWorker(SimpleWorker):
    """A :class:`rq.SimpleWorker` with a liveness beat and retries only for dead workers.

    Every ``beat_s`` seconds a thread marks the worker alive in ``aex:workers``,
    extends the running job's lease, and hands jobs whose lease lapsed (their worker
    was killed) back to the queue through RQ's own ``Retry``.
    """

    def __init__(self, *args: Any, beat_s: float = 5.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.beat_s = beat_s
        self._running: tuple[Job, Execution] | None = None
        self._stop_beat = threading.Event()

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        """A running job's lease: three beats."""
        return max(2, math.ceil(3 * self.beat_s))

    def execute_job(self, job: Job, queue: Queue) -> None:
        """Run ``job`` in this process (no fork), its lease kept by the beat thread."""
        execution = self.prepare_execution(job)
        self._running = (job, execution)
        try:
            self.perform_job(job, queue, execution)
        finally:
            self._running = None
        self.set_state(WorkerStatus.IDLE)

    def handle_job_failure(self, job: Job, queue: Queue, started_job_registry: Any = None,
                           exc_string: str = "", execution: Execution | None = None) -> None:
        """A job that raised is not retried (it would fail the same way); a canceled
        job is marked stopped. ``Retry`` is kept for jobs whose worker died."""
        if job.meta.get("canceled"):
            self._stopped_job_id = job.id
        job.retries_left = 0
        super().handle_job_failure(job, queue, started_job_registry, exc_string, execution)

    def beat(self) -> None:
        """One liveness beat (see the class docstring)."""
        now = time.time()
        self.connection.zadd(keys.WORKERS, {self.name: now + 3 * self.beat_s})
        self.connection.zremrangebyscore(keys.WORKERS, "-inf", now - 3600)
        running = self._running
        if running is not None:
            self.maintain_heartbeats(*running)
        for queue in self.queues:
            queue.started_job_registry.cleanup()

    def _beat_loop(self) -> None:
        while not self._stop_beat.wait(self.beat_s):
            try:
                self.beat()
            except RedisError as exc:
                logger.warning("worker %s: beat failed: %s", self.name, exc)

    def work(self, *args: Any, **kwargs: Any) -> bool:
        """Start the beat thread, then RQ's work loop; remove the liveness mark on exit."""
        try:
            self.beat()
        except RedisError as exc:
            logger.warning("worker %s: first beat failed: %s", self.name, exc)
        thread = threading.Thread(target=self._beat_loop, name="aex-beat", daemon=True)
        thread.start()
        try:
            return super().work(*args, **kwargs)
        finally:
            self._stop_beat.set()
            thread.join(timeout=self.beat_s + 1)
            try:
                self.connection.zrem(keys.WORKERS, self.name)
            except RedisError as exc:
                logger.warning("worker %s: could not unregister: %s", self.name, exc)


def run_worker(settings: Settings, *, burst: bool = False, name: str | None = None,
               preload: list[str] | None = None) -> bool:
    """Run a worker on ``settings.queue_name`` until stopped (or the queue is empty)."""
    import torch

    from .jobs import model_cache

    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    cache = model_cache()
    for model in preload or []:
        entry = cache.store.get(model)
        cache.get(entry.name, entry.sha256)
    connection = connect(settings.redis_url, socket_timeout=None)
    queue = Queue(settings.queue_name, connection=connection, serializer=JSONSerializer)
    worker = ModelWorker([queue], connection=connection, serializer=JSONSerializer, name=name,
                         beat_s=settings.worker_heartbeat_s)
    logger.info("worker %s on queue %r, device %s, %d model(s) preloaded",
                worker.name, settings.queue_name, cache.device, len(cache))
    return worker.work(burst=burst, with_scheduler=False)
