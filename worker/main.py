"""The worker process: a non-forking RQ worker that keeps models loaded and outlives Redis.

RQ's default worker forks a child per job, which throws the loaded model away and
does not mix with CUDA. :class:`ModelWorker` runs jobs in its own process, beats a
liveness signal (for ``/readyz`` and for spotting dead workers), and retries only
jobs whose worker died or lost Redis; a job that raises fails at once with its message.

Redis may become unavailable at any moment (restarted, out of the network, hung, full):
the worker then waits for it with back-off, logging once per outage, and never exits for
it. A job that
was running goes on; if it needs Redis before Redis is back, it is handed back to the
queue (RQ's ``Retry``) once Redis answers again.
"""

from __future__ import annotations

import logging
import math
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from redis.exceptions import RedisError
from rq import Queue, SimpleWorker
from rq.defaults import DEFAULT_LOGGING_DATE_FORMAT, DEFAULT_LOGGING_FORMAT
from rq.exceptions import DequeueTimeout, StopRequested
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.logutils import setup_loghandlers
from rq.serializers import JSONSerializer
from rq.worker import DequeueStrategy, WorkerStatus

from aex.contract import keys
from aex.contract.connection import UNAVAILABLE_ERRORS, connect, mask_url
from aex.contract.settings import Settings

from .outage import BACKOFF_MAX_S, redis_outage, wait_for_redis
from .webhooks import WebhookSender
from .webhooks import schedule as schedule_webhook

logger = logging.getLogger(__name__)

T = TypeVar("T")

# RQ's worker key lives WORKER_TTL_S + 60 s; a dequeue blocks WORKER_TTL_S - 15 s and the
# socket timeout is 10 s more, so a hung Redis is noticed within 25 s.
WORKER_TTL_S = 30
# RQ's registry maintenance (jobs stuck between dequeue and start) runs this often.
MAINTENANCE_INTERVAL_S = 60
RETRIED = (JobStatus.QUEUED, JobStatus.SCHEDULED)
ENDED = (JobStatus.FINISHED, JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED)


class ModelWorker(SimpleWorker):
    """A :class:`rq.SimpleWorker` with a liveness beat, retries only for lost workers or a
    lost Redis, and its own work loop that waits Redis outages out.

    Every ``settings.worker_heartbeat_s`` seconds a thread marks the worker alive in
    ``aex:workers``, extends the running job's lease, hands jobs whose lease lapsed (their
    worker was killed) back to the queue through RQ's own ``Retry``, and renews the
    uploads of queued jobs (so that an upload whose job is gone expires). A starting
    worker does all of this before it takes its first job.
    """

    def __init__(self, queues: list[Queue], settings: Settings, **kwargs: Any) -> None:
        super().__init__(queues, worker_ttl=WORKER_TTL_S,
                         maintenance_interval=MAINTENANCE_INTERVAL_S, **kwargs)
        self.settings = settings
        self.beat_s = settings.worker_heartbeat_s
        self._running: tuple[Job, Execution] | None = None
        self._stop_beat = threading.Event()
        self._sweep_after = 0.0  # monotonic time from which this worker sweeps

    @property
    def lease_s(self) -> int:
        """A running job's lease: three beats."""
        return max(2, math.ceil(3 * self.beat_s))

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        """A running job's lease (RQ's name for it)."""
        return self.lease_s

    # the work loop -------------------------------------------------------------------

    def work(self, burst: bool = False, logging_level: str | None = "INFO",
             date_format: str = DEFAULT_LOGGING_DATE_FORMAT,
             log_format: str = DEFAULT_LOGGING_FORMAT, max_jobs: int | None = None,
             max_idle_time: int | None = None, with_scheduler: bool = False,
             dequeue_strategy: DequeueStrategy = DequeueStrategy.DEFAULT) -> bool:
        """Take jobs until stopped (or, with ``burst``, until the queue is empty).

        Unlike RQ's loop, a Redis outage anywhere (between jobs, in a job, in RQ's own
        bookkeeping) is waited out instead of ending the worker. The signal handlers are
        installed before the worker first says it is alive, so SIGINT or SIGTERM at any
        point after that is a clean stop. RQ's scheduler, idle time limit and dequeue
        strategies (for several queues) are not supported.
        """
        if with_scheduler or max_idle_time is not None or dequeue_strategy != "default":
            raise ValueError("ModelWorker runs one queue without RQ's scheduler, idle time "
                             "limit or dequeue strategies")
        for name in ("rq.worker", "rq.job"):
            setup_loghandlers(logging_level, date_format, log_format, name=name)
        self._install_signal_handlers()
        beat = threading.Thread(target=self._beat_loop, name="aex-beat", daemon=True)
        sender = WebhookSender(self.connection, self.settings, self._stop_beat)
        completed = 0
        try:
            self._start()
            beat.start()
            sender.start()
            while not self._stop_requested and (max_jobs is None or completed < max_jobs):
                try:
                    ran = self._work_once(burst)
                except UNAVAILABLE_ERRORS as exc:
                    self._wait_for_redis(exc)
                    continue
                if ran is None:
                    logger.info("worker %s: the queue is empty, quitting (burst)", self.name)
                    break
                completed += ran
        except StopRequested:
            pass
        finally:
            self._stop_beat.set()
            if beat.is_alive():
                beat.join(timeout=self.beat_s + 1)
            sender.join(timeout=self.settings.webhook_timeout_s + 1)
            self._leave()
        return bool(completed)

    def _start(self) -> None:
        """RQ's ``bootstrap``, each step waiting out Redis outages, then a first beat (which
        hands back the jobs of workers that died, even when no worker was left to)."""
        self._until_redis(self.register_birth)
        self._until_redis(self.subscribe)
        self._until_redis(lambda: self.set_state(WorkerStatus.STARTED))
        self._until_redis(self.beat)
        logger.info("worker %s: listening on %s", self.name, ", ".join(self.queue_names()))

    def register_birth(self) -> None:
        """RQ's, except that a worker whose registration an outage interrupted may register
        again under its own name."""
        if self.birth_date is not None:
            self.connection.delete(self.key)
        super().register_birth()

    def _pubsub_exception_handler(self, exc: Exception, pubsub: Any, pubsub_thread: Any) -> None:
        """RQ's command channel: wait an outage out quietly (RQ logs every 2 s)."""
        if isinstance(exc, UNAVAILABLE_ERRORS):
            redis_outage.lost(exc)
            time.sleep(BACKOFF_MAX_S)
            return
        super()._pubsub_exception_handler(exc, pubsub, pubsub_thread)

    def _work_once(self, burst: bool) -> int | None:
        """Take and run one job: 1 when one ran, 0 when none came, None when ``burst``
        found the queue empty."""
        self.check_for_suspension(burst)
        if self.should_run_maintenance_tasks:
            self.run_maintenance_tasks()
        if self._stop_requested:
            return 0
        self.set_state(WorkerStatus.IDLE)
        self.procline(f"Listening on {','.join(self.queue_names())}")
        self.heartbeat()
        try:
            result = self.queue_class.dequeue_any(
                self._ordered_queues, None if burst else self.dequeue_timeout,
                connection=self.connection, job_class=self.job_class,
                serializer=self.serializer, death_penalty_class=self.death_penalty_class,
            )
        except DequeueTimeout:
            return 0
        if result is None:
            return None
        job, queue = result
        job.redis_server_version = self.get_redis_server_version()
        logger.info("worker %s: %s job %s", self.name, queue.name, job.id)
        self.execute_job(job, queue)
        self.heartbeat()
        return 1

    def _until_redis(self, action: Callable[[], T]) -> T:
        """``action()``, run again after each Redis outage it meets."""
        while True:
            try:
                return action()
            except UNAVAILABLE_ERRORS as exc:
                self._wait_for_redis(exc)

    def _wait_for_redis(self, exc: BaseException) -> None:
        """Wait until Redis answers, then take up the worker's place in it again."""
        # A signal now stops the worker at once (RQ would wait for a job that is gone).
        self._state = WorkerStatus.IDLE
        self._sweep_after = time.monotonic() + self.lease_s
        while True:
            if not wait_for_redis(self.connection, exc, lambda: self._stop_requested):
                raise StopRequested()
            try:
                if not self.connection.exists(self.key):  # expired, or Redis lost its data
                    self.register_birth()
                self.beat()
            except UNAVAILABLE_ERRORS as again:
                exc = again
                continue
            self.last_cleaned_at = None  # run RQ's maintenance (stuck jobs) right away
            return

    def set_shutdown_requested_date(self) -> None:
        """Note the shutdown request in Redis when Redis is there (it is informational)."""
        try:
            super().set_shutdown_requested_date()
        except UNAVAILABLE_ERRORS as exc:
            redis_outage.lost(exc)

    def _leave(self) -> None:
        """Unregister (RQ's registry and the liveness set), when Redis lets us."""
        try:
            self.connection.zrem(keys.WORKERS, self.name)
            self.teardown()
        except UNAVAILABLE_ERRORS as exc:
            logger.warning("worker %s: could not unregister, Redis is unavailable: %s",
                           self.name, exc)

    # jobs ----------------------------------------------------------------------------

    def execute_job(self, job: Job, queue: Queue) -> None:
        """Run ``job`` in this process (no fork), its lease kept by the beat thread.

        A job that already ended is not run again: its queue entry is a stale copy (its
        worker was taken for dead while Redis was away, then finished it after all).
        """
        if job.get_status(refresh=False) in ENDED:
            logger.warning("job %s is already %s; dropping a stale copy from the queue",
                           job.id, job.get_status(refresh=False))
            self.connection.lrem(queue.intermediate_queue_key, 1, job.id)
            return
        execution = self.prepare_execution(job)
        self.connection.expire(keys.upload(job.id), self.settings.upload_ttl_s)
        self._running = (job, execution)
        try:
            self.perform_job(job, queue, execution)
        finally:
            self._running = None
        self.set_state(WorkerStatus.IDLE)

    def handle_job_success(self, job: Job, queue: Queue, started_job_registry: Any,
                           execution: Execution) -> None:
        """Store the result (RQ), then drop what the job no longer needs."""
        super().handle_job_success(job, queue, started_job_registry, execution)
        self._job_ended(job)

    def handle_exception(self, job: Job, *exc_info: Any) -> None:
        """RQ logs a job's exception with its traceback; a Redis outage is logged once by
        :data:`~aex.worker.outage.redis_outage` instead."""
        if isinstance(exc_info[1], UNAVAILABLE_ERRORS):
            redis_outage.lost(exc_info[1])
            return
        super().handle_exception(job, *exc_info)

    def handle_job_failure(self, job: Job, queue: Queue, started_job_registry: Any = None,
                           exc_string: str = "", execution: Execution | None = None) -> None:
        """A job that raised is not retried (it would fail the same way), unless what it
        met was a Redis outage; a canceled job is marked stopped. ``Retry`` is kept for
        those, for jobs whose worker died and for jobs RQ found stuck before they ran."""
        if job.meta.get("canceled"):
            self._stopped_job_id = job.id
        # RQ calls this from the ``except`` clause around the job, so the job's exception
        # is the one being handled.
        lost_redis = isinstance(sys.exc_info()[1], UNAVAILABLE_ERRORS)
        if execution is not None and not lost_redis:
            job.retries_left = 0
        elif lost_redis and job.retries_left:
            logger.warning("job %s met a Redis outage; it goes back to the queue", job.id)
        elif lost_redis:
            job.meta["error"] = ("Redis was unreachable while the job ran, and it had no "
                                 "retries left (AEX_JOB_RETRIES)")
            job.save_meta()
        super().handle_job_failure(job, queue, started_job_registry, exc_string, execution)
        if job.get_status(refresh=False) not in RETRIED:
            self._job_ended(job)

    def _job_ended(self, job: Job) -> None:
        """Delete the upload and cancel flag of an ended job; keep its id known; queue the
        delivery of its webhook, if it has one."""
        with self.connection.pipeline(transaction=False) as pipe:
            pipe.delete(keys.upload(job.id), keys.cancel(job.id))
            pipe.expire(keys.known(job.id), self.settings.known_id_ttl_s)
            pipe.execute()
        schedule_webhook(self.connection, job)

    # the beat ------------------------------------------------------------------------

    def beat(self) -> None:
        """One liveness beat (see the class docstring).

        One worker at a time sweeps (a lock that lasts a beat), so that two never hand
        the same job back twice; and none sweeps until a lease has passed since its
        last failed beat, so that after an outage every live worker has renewed the
        lease of its running job before any is taken for dead.
        """
        now_s = time.time()
        self.connection.zadd(keys.WORKERS, {self.name: now_s + 3 * self.beat_s})
        self.connection.zremrangebyscore(keys.WORKERS, "-inf", now_s - 3600)
        running = self._running
        if running is not None:
            self.maintain_heartbeats(*running)
            self.connection.expire(keys.upload(running[0].id), self.settings.upload_ttl_s)
        for queue in self.queues:
            if time.monotonic() >= self._sweep_after and self.connection.set(
                    keys.sweep_lock(queue.name), self.name, nx=True,
                    px=max(1, int(self.beat_s * 1000))):
                queue.started_job_registry.cleanup()
            self._renew_queued_uploads(queue)

    def _renew_queued_uploads(self, queue: Queue) -> None:
        """Give the uploads of queued jobs their full time to live again."""
        job_ids = queue.get_job_ids(0, self.settings.max_queue)
        if not job_ids:
            return
        with self.connection.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.expire(keys.upload(job_id), self.settings.upload_ttl_s)
            pipe.execute()

    def _beat_loop(self) -> None:
        while not self._stop_beat.wait(self.beat_s):
            try:
                self.beat()
            except UNAVAILABLE_ERRORS as exc:
                redis_outage.lost(exc)
                self._sweep_after = time.monotonic() + self.lease_s
            except RedisError as exc:
                logger.warning("worker %s: beat failed: %s", self.name, exc)
            else:
                redis_outage.back()


def _stop_before_start(signum: int, frame: object) -> None:
    raise SystemExit(0)


def run_worker(settings: Settings, *, burst: bool = False, name: str | None = None,
               preload: list[str] | None = None, evaluations: bool = False) -> bool:
    """Run a worker on ``settings.queue_name`` until stopped (or the queue is empty); with
    ``evaluations``, on the evaluation queue (``settings.evaluation_queue_name``) instead.

    A stop signal before the worker takes jobs ends the process cleanly too; a Redis
    that is away at start is waited for.
    """
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _stop_before_start)
    import torch

    from .jobs import model_cache

    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    cache = model_cache()
    for model in preload or []:
        entry = cache.store.get(model)
        cache.get(entry.name, entry.sha256)
    connection = connect(settings.redis_url, socket_timeout=None)
    queue_name = settings.evaluation_queue_name if evaluations else settings.queue_name
    queue = Queue(queue_name, connection=connection, serializer=JSONSerializer)
    while True:
        try:
            worker = ModelWorker([queue], settings, connection=connection,
                                 serializer=JSONSerializer, name=name)
            break
        except UNAVAILABLE_ERRORS as exc:
            wait_for_redis(connection, exc)
    logger.info("worker %s on queue %r at %s, device %s, %d model(s) preloaded",
                worker.name, queue_name, mask_url(settings.redis_url), cache.device,
                len(cache))
    return worker.work(burst=burst, with_scheduler=False)

