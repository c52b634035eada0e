"""The worker overrides RQ internals (``aex.worker.main.ModelWorker``); this test fails
when the installed RQ is not the minor version those overrides were written against, or
when the internals they override or call change their signatures.

Upgrading RQ: read the new version's ``rq/worker/base.py``, adapt ``ModelWorker``, then
update ``RQ_MINOR``, ``INTERNALS`` and the pin in pyproject.toml together.
"""

from __future__ import annotations

import inspect
import re
import tomllib
from importlib.metadata import version
from pathlib import Path

from rq import Queue, SimpleWorker

from aex.worker.main import ModelWorker

RQ_MINOR = "3.0"
# RQ methods ModelWorker overrides or calls -> their parameters in RQ_MINOR.
INTERNALS = {
    # overridden
    "_pubsub_exception_handler": ["self", "exc", "pubsub", "pubsub_thread"],
    "execute_job": ["self", "job", "queue"],
    "get_heartbeat_ttl": ["self", "job", "working_time"],
    "handle_exception": ["self", "job", "exc_info"],
    "handle_job_failure": ["self", "job", "queue", "started_job_registry", "exc_string",
                           "execution"],
    "handle_job_success": ["self", "job", "queue", "started_job_registry", "execution"],
    "register_birth": ["self"],
    "set_shutdown_requested_date": ["self"],
    "work": ["self", "burst", "logging_level", "date_format", "log_format", "max_jobs",
             "max_idle_time", "with_scheduler", "dequeue_strategy"],
    # called by the work loop that replaces RQ's
    "prepare_execution": ["self", "job"],
    "perform_job": ["self", "job", "queue", "execution"],
    "maintain_heartbeats": ["self", "job", "execution"],
    "set_state": ["self", "state", "pipeline"],
    "check_for_suspension": ["self", "burst"],
    "run_maintenance_tasks": ["self"],
    "heartbeat": ["self", "timeout", "pipeline"],
    "procline": ["self", "message"],
    "subscribe": ["self"],
    "teardown": ["self"],
    "get_redis_server_version": ["self"],
    "_install_signal_handlers": ["self"],
    "queue_names": ["self"],
}
# RQ's worker state that ModelWorker's loop reads or sets.
ATTRIBUTES = ("_state", "_stop_requested", "_stopped_job_id", "_ordered_queues", "birth_date",
              "last_cleaned_at", "dequeue_timeout")


def test_installed_rq_is_the_pinned_minor_version() -> None:
    assert version("rq").startswith(f"{RQ_MINOR}."), version("rq")
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    extras = pyproject["project"]["optional-dependencies"]
    pins = {re.sub(r"\s", "", dep) for role in ("api", "worker") for dep in extras[role]
            if dep.startswith("rq")}
    major, minor = RQ_MINOR.split(".")
    assert pins == {f"rq>={RQ_MINOR},<{major}.{int(minor) + 1}"}, pins


def test_overridden_and_called_internals_keep_their_signatures() -> None:
    for name, parameters in INTERNALS.items():
        assert list(inspect.signature(getattr(SimpleWorker, name)).parameters) == parameters, name


def test_worker_state_and_queue_internals_are_there() -> None:
    source = inspect.getsource(SimpleWorker.__init__)
    for name in ATTRIBUTES:
        assert f"self.{name}" in source or hasattr(SimpleWorker, name), name
    assert list(inspect.signature(Queue.dequeue_any).parameters) == [
        "queues", "timeout", "connection", "job_class", "serializer", "death_penalty_class"]
    assert isinstance(Queue.intermediate_queue_key, property)


def test_every_override_is_listed() -> None:
    """A new override of an RQ method must be added to INTERNALS (and so reviewed)."""
    rq_methods = {name for name, _ in inspect.getmembers(SimpleWorker, inspect.isfunction)}
    overridden = {name for name in vars(ModelWorker)
                  if name in rq_methods and not name.startswith("__")}
    assert overridden <= set(INTERNALS), overridden - set(INTERNALS)
