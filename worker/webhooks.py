"""Webhook deliveries: a signed POST to a job's callback URL when the job has ended.

A worker queues a delivery in Redis (:data:`~aex.contract.keys.WEBHOOKS`, scored by
when it is due) once the job's final status is stored; a sender thread in every worker
takes due deliveries (one worker each: whoever removes it from the set) and posts them,
so a slow or dead receiver never holds up a job. A failed delivery is due again after
``webhook_backoff_s``, doubling each time, until ``webhook_retries`` retries are spent.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

import httpx
from redis import Redis
from redis.exceptions import RedisError
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from aex.contract import keys, webhooks
from aex.contract.settings import Settings

logger = logging.getLogger(__name__)

POLL_S = 0.5
TAKE = 10
MAX_BACKOFF_S = 3600.0


def schedule(connection: Redis, job: Job, attempt: int = 0, delay_s: float = 0.0) -> None:
    """Queue the delivery of ``job``'s end to its callback (if it named one)."""
    url = job.meta.get("callback")
    if not url:
        return
    connection.zadd(keys.WEBHOOKS,
                    {webhooks.delivery(job.id, url, attempt): time.time() + delay_s})


def payload(job: Job) -> dict[str, Any]:
    """What a delivery says: the job, its final status and where to read its result."""
    status = job.get_status(refresh=False)
    if job.meta.get("canceled") or status in (JobStatus.STOPPED, JobStatus.CANCELED):
        word = "canceled"
    else:
        word = "finished" if status == JobStatus.FINISHED else "failed"
    return {
        "event": webhooks.EVENT, "id": job.id, "kind": job.meta.get("kind"),
        "model": job.meta.get("model"), "status": word,
        "error": job.meta.get("error") if word != "finished" else None,
        "ended_at": job.ended_at.isoformat() if job.ended_at else None,
        "status_url": f"/v1/jobs/{job.id}",
    }


class WebhookSender:
    """The thread that delivers due webhooks until ``stop`` is set."""

    def __init__(self, connection: Redis, settings: Settings, stop: threading.Event) -> None:
        self.connection, self.settings, self.stop = connection, settings, stop
        self.thread = threading.Thread(target=self._loop, name="aex-webhooks", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def join(self, timeout: float) -> None:
        if self.thread.is_alive():
            self.thread.join(timeout)

    def _loop(self) -> None:
        with httpx.Client(timeout=self.settings.webhook_timeout_s,
                          follow_redirects=False) as http:
            while not self.stop.wait(POLL_S):
                try:
                    due = self.connection.zrangebyscore(keys.WEBHOOKS, "-inf", time.time(),
                                                        start=0, num=TAKE)
                    for entry in due:
                        if isinstance(entry, bytes | str) and self.connection.zrem(
                                keys.WEBHOOKS, entry):
                            self._deliver(http, json.loads(entry))
                except RedisError as exc:
                    logger.warning("webhooks: Redis: %s", exc)

    def _deliver(self, http: httpx.Client, entry: dict[str, Any]) -> None:
        secret = self.settings.webhook_secret
        if not secret:
            logger.warning("webhook of job %s dropped: AEX_WEBHOOK_SECRET is not set",
                           entry["job"])
            return
        try:
            job = Job.fetch(entry["job"], connection=self.connection,
                            serializer=JSONSerializer)
        except NoSuchJobError:
            logger.info("webhook of job %s dropped: the job has expired", entry["job"])
            return
        body = json.dumps(payload(job)).encode()
        stamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            webhooks.TIMESTAMP_HEADER: stamp,
            webhooks.SIGNATURE_HEADER: webhooks.signature(secret, stamp, body),
            webhooks.DELIVERY_HEADER: f"{job.id}.{entry['attempt']}",
        }
        try:
            response = http.post(entry["url"], content=body, headers=headers)
            if 200 <= response.status_code < 300:
                logger.info("webhook of job %s delivered", job.id)
                return
            reason = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            reason = f"{type(exc).__name__}: {exc}"
        attempt = int(entry["attempt"]) + 1
        if attempt > self.settings.webhook_retries:
            logger.warning("webhook of job %s to %s failed (%s); no retries left", job.id,
                           entry["url"], reason)
            return
        delay = min(self.settings.webhook_backoff_s * 2 ** (attempt - 1), MAX_BACKOFF_S)
        logger.info("webhook of job %s failed (%s); retry %d in %.1f s", job.id, reason,
                    attempt, delay)
        schedule(self.connection, job, attempt, delay)
