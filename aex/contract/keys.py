"""Redis key names shared by the API and the workers (one place for each)."""

from __future__ import annotations

PREFIX = "aex"
WORKERS = f"{PREFIX}:workers"  # sorted set: worker name -> last beat (unix seconds)


def upload(job_id: str) -> str:
    """The uploaded image bytes of a job."""
    return f"{PREFIX}:upload:{job_id}"


def artifacts(job_id: str) -> str:
    """Hash of artifact name -> PNG bytes of a job."""
    return f"{PREFIX}:artifacts:{job_id}"


def cancel(job_id: str) -> str:
    """Set when a client asks to cancel a running job."""
    return f"{PREFIX}:cancel:{job_id}"


def job_metrics(kind: str) -> str:
    """Hash of job-duration histogram counters of one job kind."""
    return f"{PREFIX}:metrics:jobs:{kind}"
