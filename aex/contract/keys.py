"""Redis key names shared by the API and the workers (one place for each)."""

from __future__ import annotations

PREFIX = "aex"
WORKERS = f"{PREFIX}:workers"  # sorted set: worker name -> end of its liveness (unix s)
READY_PROBE = f"{PREFIX}:ready-probe"  # written to see that Redis takes writes
WEBHOOKS = f"{PREFIX}:webhooks"  # sorted set: pending delivery (JSON) -> when it is due


def upload(job_id: str) -> str:
    """The uploaded image bytes of a job (a batch's: a hash of upload index -> bytes)."""
    return f"{PREFIX}:upload:{job_id}"


def known(job_id: str) -> str:
    """A job id the API accepted (its value: the owner's key hash, or empty), kept longer
    than the job so that an expired job is told apart from one that never existed."""
    return f"{PREFIX}:known:{job_id}"


def artifacts(job_id: str) -> str:
    """Hash of artifact name -> bytes (PNG, .npy, safetensors) of a job."""
    return f"{PREFIX}:artifacts:{job_id}"


def partial(job_id: str) -> str:
    """List of a running batch's finished image results (JSON), in the order they ended."""
    return f"{PREFIX}:partial:{job_id}"


def cancel(job_id: str) -> str:
    """Set when a client asks to cancel a running job."""
    return f"{PREFIX}:cancel:{job_id}"


def sweep_lock(queue: str) -> str:
    """Held for one beat by the worker that hands back the jobs of dead workers."""
    return f"{PREFIX}:sweep:{queue}"


def job_metrics(kind: str) -> str:
    """Hash of job-duration histogram counters of one job kind."""
    return f"{PREFIX}:metrics:jobs:{kind}"
