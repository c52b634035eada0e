"""Failures: Redis stopped and restarted, a worker killed mid-job, a job timing out."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import httpx
import pytest
from aex_service_testing import (
    image_bytes,
    make_settings,
    service_env,
    start_api,
    start_worker,
    wait_for_worker,
    wait_job,
    wait_until,
)
from fastapi.testclient import TestClient
from redis import Redis
from rq.job import Job
from rq.serializers import JSONSerializer

from aex.client import Client
from aex.service.app import create_app
from aex.service.redis_server import RedisServer, free_port

SLOW = {"model": "slow", "targets": "all", "steps": "200"}


def submit(client: httpx.Client | TestClient, **fields: str) -> httpx.Response:
    return client.post("/v1/explanations", files={"image": ("x.png", image_bytes())},
                       data=fields)


def test_redis_stop_and_restart(model_dir: Path, tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis", port=free_port(), persistent=True).start()
    workers = []
    try:
        app = create_app(make_settings(server.url, model_dir, retry_after_s=2))
        with TestClient(app) as client:
            ids = [submit(client, targets="cat", steps="3").json()["id"] for _ in range(3)]
            server.stop()
            down = submit(client)
            assert down.status_code == 503
            assert "Redis" in down.json()["detail"] and down.headers["retry-after"] == "2"
            assert client.get(f"/v1/jobs/{ids[0]}").status_code == 503
            assert client.get("/readyz").status_code == 503
            assert client.get("/healthz").status_code == 200
            server.start()
            # the same app recovers by itself, and nothing queued was lost
            for job_id in ids:
                assert client.get(f"/v1/jobs/{job_id}").json()["status"] == "queued"
            redis = Redis.from_url(server.url)
            env = service_env(server.url, model_dir)
            workers.append(start_worker(env, tmp_path / "worker.log"))
            wait_for_worker(redis, workers[0])
            for job_id in ids:
                view = client.get(f"/v1/jobs/{job_id}", params={"wait": 60}).json()
                assert view["status"] == "finished", view
            # the worker, too, rides out a restart
            server.stop()
            time.sleep(1.5)
            server.start()
            again = submit(client, targets="dog", steps="3")
            assert again.status_code == 202
            view = client.get(again.json()["status_url"], params={"wait": 90}).json()
            assert view["status"] == "finished", view
    finally:
        for worker in workers:
            worker.stop()
        server.stop()


def test_client_waits_through_a_redis_restart(model_dir: Path, tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis", port=free_port(), persistent=True).start()
    api, url = start_api(service_env(server.url, model_dir, AEX_RETRY_AFTER_S="1"),
                         tmp_path / "api.log")
    restart = threading.Timer(1.5, server.start)
    try:
        with Client(url) as client:
            job = client.explain(image_bytes(), targets="cat", wait=False)
            server.stop()
            restart.start()
            # no worker: the job stays queued, and the 503s in between are waited out
            with pytest.raises(TimeoutError, match="still queued"):
                client.wait(job["id"], timeout=4, poll=1)
    finally:
        restart.join()
        api.stop()
        server.stop()


def test_killed_worker_job_is_retried_elsewhere(redis_url: str, model_dir: Path,
                                                redis_db: Redis, tmp_path: Path) -> None:
    env = service_env(redis_url, model_dir)
    api, url = start_api(env, tmp_path / "api.log")
    first = start_worker(env, tmp_path / "first.log", name="first", preload="slow")
    second = None
    try:
        wait_for_worker(redis_db, first)
        with httpx.Client(base_url=url, timeout=30) as http:
            job_id = submit(http, **SLOW).json()["id"]
            wait_until(lambda: http.get(f"/v1/jobs/{job_id}").json()["progress"] > 0.05)
            first.process.send_signal(signal.SIGKILL)
            first.process.wait()
            assert http.get(f"/v1/jobs/{job_id}").json()["status"] == "started"
            second = start_worker(env, tmp_path / "second.log", name="second", preload="slow")
            view = wait_job(http, job_id, timeout=180)
            assert view["status"] == "finished", (view, second.output())
            assert len(view["result"]["targets"]) == 10
            job = Job.fetch(job_id, connection=redis_db, serializer=JSONSerializer)
            assert job.worker_name == "second"
    finally:
        first.stop()
        if second is not None:
            second.stop()
        api.stop()


def test_job_timeout_fails_with_a_clear_error(redis_url: str, model_dir: Path,
                                              redis_db: Redis, tmp_path: Path) -> None:
    env = service_env(redis_url, model_dir, AEX_JOB_TIMEOUT_S="2")
    api, url = start_api(env, tmp_path / "api.log")
    worker = start_worker(env, tmp_path / "worker.log", preload="slow")
    try:
        wait_for_worker(redis_db, worker)
        with httpx.Client(base_url=url, timeout=30) as http:
            job_id = submit(http, **SLOW).json()["id"]
            view = wait_job(http, job_id, timeout=60)
            assert view["status"] == "failed"
            assert "time limit of 2 s" in view["error"]
            # not retried: a job that ran out of time would only do so again
            assert redis_db.llen("rq:queue:aex") == 0
            ok = submit(http, targets="cat", steps="3").json()["id"]
            assert wait_job(http, ok)["status"] == "finished"
    finally:
        worker.stop()
        api.stop()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_worker_stops_on_signal(redis_url: str, model_dir: Path, redis_db: Redis,
                                tmp_path: Path, signum: int) -> None:
    worker = start_worker(service_env(redis_url, model_dir), tmp_path / "w.log", preload=None)
    wait_for_worker(redis_db, worker)
    worker.process.send_signal(signum)
    assert worker.process.wait(30) == 0
    assert redis_db.zcard("aex:workers") == 0
    worker.stop()
