"""Faults with real processes: Redis away under a running job, a worker killed with no other
alive, ``aex serve`` restarted on its own Redis, Redis at ``maxmemory``.

Nothing is restarted by hand but Redis itself (which stands for an operator's restart or a
network cut): the workers and ``aex serve`` must heal on their own.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from aex_service_testing import (
    SLOW_CLASSES,
    children,
    image_bytes,
    make_model,
    make_settings,
    noise_png,
    process_name,
    service_env,
    start_serve,
    start_worker,
    wait_for_worker,
    wait_job,
    wait_until,
)
from fastapi.testclient import TestClient
from redis import Redis
from rq.job import Job
from rq.serializers import JSONSerializer

from aex.service.app import create_app
from aex.service.redis_server import RedisServer, free_port

# On the outage test's own "long" network (4× the cost of "slow"): LONG must outlast an
# outage of more than the job's lease (4 s) plus the reconnection back-off.
LONG = {"model": "long", "targets": "all", "steps": "100"}  # ~12 s on one thread
ENDING = {"model": "long", "targets": "all", "steps": "35"}  # ~4 s
SHORT = {"model": "slow", "targets": "all", "steps": "35"}  # ~3 s
QUICK = {"targets": "cat", "steps": "3"}
LOST = "Redis is unavailable"
BACK = "Redis is back"


def submit(client: httpx.Client | TestClient, **fields: str) -> str:
    response = client.post("/v1/explanations", files={"image": ("x.png", image_bytes())},
                           data=fields)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def progress(client: httpx.Client | TestClient, job_id: str) -> float:
    return float(client.get(f"/v1/jobs/{job_id}").json()["progress"])


def retries_left(redis: Redis, job_id: str) -> int:
    job = Job.fetch(job_id, connection=redis, serializer=JSONSerializer)
    return int(job.retries_left or 0)


def test_worker_outlives_redis_outages(tmp_path: Path) -> None:
    """One worker process through three outages: at its start, in the middle of a long job
    (which goes on), and across the end of a job (which runs again once Redis is back)."""
    model_dir = tmp_path / "models"  # its own, with a network slow enough for LONG
    make_model(model_dir, "long", SLOW_CLASSES, [32, 64, 128])
    server = RedisServer(tmp_path / "redis", port=free_port(), persistent=True)
    worker = start_worker(service_env(server.url, model_dir), tmp_path / "worker.log",
                          preload="long")
    try:
        wait_until(lambda: LOST in worker.output(), timeout=60)
        server.start()
        redis = Redis.from_url(server.url)
        wait_for_worker(redis, worker)
        with TestClient(create_app(make_settings(server.url, model_dir))) as client:
            long = submit(client, **LONG)
            wait_until(lambda: progress(client, long) > 0.05, timeout=60)
            server.stop()
            time.sleep(4)  # more than the job's lease of three 1-s beats
            server.start()
            view = client.get(f"/v1/jobs/{long}", params={"wait": 60}).json()
            assert view["status"] == "finished", (view, worker.output())
            assert retries_left(redis, long) == 2  # it went on: not run again

            short = submit(client, **ENDING)
            wait_until(lambda: client.get(f"/v1/jobs/{short}").json()["status"] == "started",
                       interval=0.02)
            server.stop()
            # the job ends while Redis is away: it cannot store its result
            wait_until(lambda: f"job {short} interrupted" in worker.output(), timeout=60)
            server.start()
            view = client.get(f"/v1/jobs/{short}", params={"wait": 60}).json()
            assert view["status"] == "finished", (view, worker.output())
            assert retries_left(redis, short) == 1  # handed back once, then finished
            assert len(view["result"]["targets"]) == 10
        assert worker.process.poll() is None, worker.output()
        log = worker.output()
        assert log.count(LOST) == 3 and log.count(BACK) == 3, log
        assert "quitting" not in log
    finally:
        worker.stop()
        server.stop()


def test_maxmemory_is_503_then_recovers(model_dir: Path, tmp_path: Path) -> None:
    """Submissions fill Redis to ``maxmemory``: the API answers 503 with ``Retry-After`` and
    ``/readyz`` says why; a worker waits while Redis refuses its writes; once Redis has room
    again, both carry on by themselves."""
    server = RedisServer(tmp_path / "redis", port=free_port()).start()
    worker = start_worker(service_env(server.url, model_dir), tmp_path / "worker.log")
    try:
        redis = Redis.from_url(server.url)
        wait_for_worker(redis, worker)
        app = create_app(make_settings(server.url, model_dir, retry_after_s=4))
        with TestClient(app) as client:
            first = submit(client, **QUICK)
            assert client.get(f"/v1/jobs/{first}", params={"wait": 60}).json()["status"] == (
                "finished")
            used = int(redis.info("memory")["used_memory"])
            redis.config_set("maxmemory-policy", "noeviction")
            redis.config_set("maxmemory", used + 256 * 1024)
            big = noise_png((128, 128))  # 48 kB
            answers = [client.post("/v1/explanations", files={"image": ("x.png", big)})
                       for _ in range(60)]
            full = [a for a in answers if a.status_code != 202]
            assert full, "Redis never reached maxmemory"
            assert {a.status_code for a in full} == {503}
            assert full[0].headers["retry-after"] == "4"
            assert "out of memory" in full[0].json()["detail"]
            ready = client.get("/readyz")
            assert ready.status_code == 503 and "out of memory" in ready.json()["detail"]
            assert client.get("/healthz").status_code == 200
            # past the limit now: Redis refuses every write, the worker's beat too
            redis.config_set("maxmemory", used // 2)
            wait_until(lambda: LOST in worker.output(), timeout=30)
            assert client.get("/readyz").status_code == 503
            redis.config_set("maxmemory", 0)
            after = submit(client, **QUICK)
            view = client.get(f"/v1/jobs/{after}", params={"wait": 60}).json()
            assert view["status"] == "finished", (view, worker.output())
            assert client.get("/readyz").status_code == 200
        assert worker.process.poll() is None, worker.output()
        log = worker.output()  # near the limit Redis may refuse and take writes by turns
        assert log.count(LOST) == log.count(BACK) >= 1, log
    finally:
        worker.stop()
        server.stop()


def _worker_of(serve_pid: int) -> int:
    (pid,) = [p for p in children(serve_pid) if "aex.worker" in process_name(p)]
    return pid


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_serve_heals_and_keeps_every_job_across_a_restart(model_dir: Path,
                                                          tmp_path: Path) -> None:
    """``aex serve`` restarts its killed worker (no other alive: the job still finishes),
    a restart of ``aex serve`` keeps every job it accepted (finished, running, queued), and
    ``aex serve`` restarts its Redis when that dies (its worker rides the outage out)."""
    env = service_env("unused", model_dir, AEX_DATA_DIR=str(tmp_path / "data"))
    del env["AEX_REDIS_URL"]
    serve, url = start_serve(env, tmp_path / "serve1.log", "--embedded-redis",
                             "--stop-grace", "0.5")
    ids: dict[str, str] = {}
    try:
        with httpx.Client(base_url=url, timeout=30) as http:
            ids["finished"] = submit(http, **QUICK)
            assert wait_job(http, ids["finished"])["status"] == "finished"

            ids["orphaned"] = submit(http, **SHORT)
            wait_until(lambda: progress(http, ids["orphaned"]) > 0, timeout=60)
            first = _worker_of(serve.pid)
            os.kill(first, signal.SIGKILL)
            wait_until(lambda: "restarted worker 1" in serve.output(), timeout=30)
            view = wait_job(http, ids["orphaned"], timeout=120)
            assert view["status"] == "finished", (view, serve.output())
            assert _worker_of(serve.pid) != first

            ids["running"] = submit(http, **SHORT)
            ids["queued"] = submit(http, **QUICK)
            wait_until(lambda: progress(http, ids["running"]) > 0, timeout=60)
        serve.process.send_signal(signal.SIGTERM)  # its worker gets 0.5 s: too short
        assert serve.process.wait(60) == 0
        assert "did not stop in 0.5 s; killing it" in serve.output()
        serve.stop()

        serve, url = start_serve(env, tmp_path / "serve2.log", "--embedded-redis")
        with httpx.Client(base_url=url, timeout=30) as http:
            views: dict[str, dict[str, Any]] = {}
            for state, job_id in ids.items():
                response = http.get(f"/v1/jobs/{job_id}")
                assert response.status_code == 200, (state, response.text)
                views[state] = wait_job(http, job_id, timeout=120)
            assert {state: v["status"] for state, v in views.items()} == dict.fromkeys(
                ids, "finished"), serve.output()
            unknown = http.get(f"/v1/jobs/{'0' * 32}")
            assert unknown.status_code == 404 and "expired" not in unknown.json()["detail"]

            (redis_pid,) = [p for p in children(serve.pid) if "redis-server" in process_name(p)]
            os.kill(redis_pid, signal.SIGKILL)  # its append-only file is written on every write
            wait_until(lambda: "restarted the Redis server" in serve.output(), timeout=30)
            for job_id in ids.values():
                assert http.get(f"/v1/jobs/{job_id}").json()["status"] == "finished"
            after = submit(http, **QUICK)
            assert wait_job(http, after)["status"] == "finished", serve.output()
    finally:
        serve.stop()
    assert "Redis: unix://" in serve.output() and str(tmp_path / "data") in serve.output()
