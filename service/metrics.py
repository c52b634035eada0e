"""Prometheus metrics: HTTP requests (per API process) and queue state and job
durations (read from Redis at scrape time, so they cover every worker)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.exceptions import RedisError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aex.contract import keys
from aex.contract.jobs import JOB_FUNCTIONS
from aex.contract.metrics import JOB_BUCKETS

from .queue import JobQueue

logger = logging.getLogger(__name__)

class QueueCollector(Collector):
    """Queue depth, jobs by state, live workers and job-duration histograms."""

    def __init__(self, queue: JobQueue) -> None:
        self.queue = queue

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("aex_redis_up", "1 when Redis answered this scrape")
        try:
            families = list(self._collect_from_redis())
        except RedisError as exc:
            logger.warning("metrics: Redis unavailable: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _collect_from_redis(self) -> Iterator[Metric]:
        q = self.queue.queue
        depth = GaugeMetricFamily("aex_queue_depth", "jobs waiting in the queue")
        depth.add_metric([], q.count)
        yield depth
        states = GaugeMetricFamily("aex_jobs", "jobs by state in Redis", labels=["state"])
        states.add_metric(["started"], q.started_job_registry.count)
        states.add_metric(["finished"], q.finished_job_registry.count)
        states.add_metric(["failed"], q.failed_job_registry.count)
        yield states
        workers = GaugeMetricFamily("aex_workers_alive", "workers with a recent liveness beat")
        workers.add_metric([], self.queue.workers_alive())
        yield workers
        durations = HistogramMetricFamily(
            "aex_job_duration_seconds", "job run time in the worker", labels=["kind"]
        )
        ended = GaugeMetricFamily("aex_jobs_ended", "jobs ended, by kind and outcome",
                                  labels=["kind", "status"])
        for kind in JOB_FUNCTIONS:
            raw = self.queue.connection.hgetall(keys.job_metrics(kind))
            stats = {(k.decode() if isinstance(k, bytes) else k): float(v)
                     for k, v in raw.items()}
            buckets = [(str(b), stats.get(f"le_{b}", 0.0)) for b in JOB_BUCKETS]
            buckets.append(("+Inf", stats.get("count", 0.0)))
            durations.add_metric([kind], buckets, sum_value=stats.get("sum", 0.0))
            for status in ("finished", "failed", "canceled"):
                ended.add_metric([kind, status], stats.get(f"status_{status}", 0.0))
        yield durations
        yield ended


class Metrics:
    """One app's registry: request counters plus the queue collector."""

    def __init__(self, queue: JobQueue) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "aex_http_requests", "HTTP requests", ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "aex_http_request_duration_seconds", "HTTP request time", ["method", "route"],
            registry=self.registry,
        )
        self.submitted = Counter(
            "aex_jobs_submitted", "jobs accepted by this API process", ["kind"],
            registry=self.registry,
        )
        self.registry.register(QueueCollector(queue))


def route_template(scope: Scope) -> str:
    """The matched route with its parameters as ``{name}`` (``unmatched`` for a 404)."""
    if scope.get("route") is None:
        return "unmatched"
    names = {str(v): k for k, v in scope.get("path_params", {}).items()}
    parts = [f"{{{names[p]}}}" if p in names else p for p in scope["path"].split("/")]
    return "/".join(parts)


class MetricsMiddleware:
    """Counts requests by route template (not raw path, to bound label cardinality)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        start = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = route_template(scope)
            method = scope.get("method", "")
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(method, route).observe(time.perf_counter() - start)
