"""One typed settings object, read from ``AEX_*`` environment variables."""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:[0-9]+)?")
# 4096 × 4096: a 12-megapixel phone photo or a 4K frame passes; the served models take
# 32 × 32, so more pixels add nothing but decoding memory in the worker (an RGBA frame of
# this size is 64 MiB). The API never decodes pixels, so this bounds the worker only.
DEFAULT_MAX_PIXELS = 4096 * 4096
UPLOAD_TTL_MARGIN_S = 300  # an upload outlives its job's time limit by this much
KNOWN_ID_MARGIN_S = 86_400  # a job id is remembered this long after its result expires


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/aex``, else ``~/.local/share/aex``."""
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "aex"


class Settings(BaseSettings):
    """Every knob of the API and the workers; each is ``AEX_<NAME>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="AEX_", extra="ignore")

    redis_url: str = Field(
        "redis://127.0.0.1:6379/0",
        description="Redis holding the queue, results and artifacts (redis:// or unix://)",
    )
    queue_name: str = Field("aex", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    model_dir: Path | None = Field(
        None, description="model registry directory (default ~/.local/share/aex/models)"
    )
    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="where `aex serve` keeps its embedded Redis's data (append-only file)",
    )
    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="comma-separated keys; when set, every /v1 route needs X-API-Key and "
                    "each key sees and cancels only the jobs it submitted",
    )
    admin_api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="comma-separated keys that may also see and cancel every key's jobs",
    )
    # workers
    api_url: str | None = Field(
        None, description="where a worker fetches checkpoints it lacks (the API's base URL)"
    )
    api_key: str | None = Field(None, description="the key a worker sends to api_url")
    device: str = Field("auto", description="auto (CUDA when present), cpu, cuda or cuda:N")
    model_cache_size: int = Field(4, ge=1, le=64, description="models a worker keeps loaded")
    torch_threads: int | None = Field(None, ge=1, le=256, description="CPU threads per worker")
    worker_heartbeat_s: float = Field(
        5.0, gt=0, le=300,
        description="a worker's liveness beat; a job whose worker misses 3 beats is retried",
    )
    # limits
    max_upload_bytes: int = Field(10 * 1024 * 1024, ge=1024, le=1 << 30)
    max_pixels: int = Field(
        DEFAULT_MAX_PIXELS, ge=1024, le=500_000_000,
        description="largest width × height an upload may declare (decoded by workers only)",
    )
    max_targets: int = Field(100, ge=1, le=10_000, description="targets in one explanation")
    max_batch_images: int = Field(100, ge=1, le=1000, description="images in one batch")
    max_batch_bytes: int = Field(
        32 * 1024 * 1024, ge=1024, le=1 << 32,
        description="bytes of a batch's images, once unpacked from an archive")
    max_batch_pixels: int = Field(
        64 * 1024 * 1024, ge=1024, le=10_000_000_000,
        description="pixels of a batch's images in all")
    max_queue: int = Field(100, ge=1, le=1_000_000, description="queued jobs before 429")
    retry_after_s: int = Field(10, ge=1, le=3600, description="Retry-After on 429 and 503")
    max_wait_s: float = Field(120.0, ge=0, le=600, description="longest ?wait= long-poll")
    max_event_streams: int = Field(
        100, ge=1, le=100_000, description="open /events streams per API process before 429")
    # webhooks
    webhook_allow: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="comma-separated URL prefixes (scheme://host[:port]/path) a job's "
                    "callback may start with; none: webhooks are off")
    webhook_secret: str | None = Field(
        None, description="the HMAC-SHA256 key that signs webhook deliveries")
    webhook_retries: int = Field(5, ge=0, le=20, description="retries of a failed delivery")
    webhook_backoff_s: float = Field(
        2.0, gt=0, le=3600, description="first retry delay; it doubles with each retry")
    webhook_timeout_s: float = Field(5.0, gt=0, le=60, description="one delivery's timeout")
    # jobs
    job_timeout_s: int = Field(600, ge=1, le=86_400)
    result_ttl_s: int = Field(3600, ge=1, le=30 * 86_400)
    failure_ttl_s: int = Field(86_400, ge=1, le=30 * 86_400)
    job_retries: int = Field(2, ge=0, le=10, description="retries of a job whose worker died")
    # evaluations
    eval_data: Path | None = Field(
        None, description="ImageFolder tree an evaluation worker measures models on "
                          "(POST /v1/evaluations); a request never names a path")
    eval_timeout_s: int = Field(3600, ge=1, le=7 * 86_400,
                                description="longest an evaluation job may run, in seconds")

    @field_validator("api_keys", "admin_api_keys", "webhook_allow", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [k.strip() for k in value.split(",") if k.strip()]
        return value

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        if not DEVICE_PATTERN.fullmatch(value):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {value!r}")
        return value


    @property
    def upload_ttl_s(self) -> int:
        """How long an upload waits for the worker that needs it: the job's time limit plus
        a margin, renewed while the job is queued or running (so an abandoned one expires)."""
        return self.job_timeout_s + UPLOAD_TTL_MARGIN_S

    @property
    def known_id_ttl_s(self) -> int:
        """How long a job id is remembered after the job ended: longer than any result, so
        that an expired job is told apart from one that never existed."""
        return max(self.result_ttl_s, self.failure_ttl_s) + KNOWN_ID_MARGIN_S

    @property
    def evaluation_queue_name(self) -> str:
        """The queue of evaluation jobs (``aex worker --evaluations`` takes them)."""
        return f"{self.queue_name}-eval"

    @property
    def keys_required(self) -> bool:
        """Whether /v1 routes need an ``X-API-Key`` (any key is configured)."""
        return bool(self.api_keys or self.admin_api_keys)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once from the environment."""
    return Settings()
