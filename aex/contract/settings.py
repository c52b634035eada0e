"""One typed settings object, read from ``AEX_*`` environment variables."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


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
    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="comma-separated keys; when set, every /v1 route needs X-API-Key",
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
        40_000_000, ge=1024, le=500_000_000, description="largest width × height decoded"
    )
    max_targets: int = Field(100, ge=1, le=10_000, description="targets in one explanation")
    max_queue: int = Field(100, ge=1, le=1_000_000, description="queued jobs before 429")
    retry_after_s: int = Field(10, ge=1, le=3600, description="Retry-After on 429 and 503")
    max_wait_s: float = Field(120.0, ge=0, le=600, description="longest ?wait= long-poll")
    # jobs
    job_timeout_s: int = Field(600, ge=1, le=86_400)
    result_ttl_s: int = Field(3600, ge=1, le=30 * 86_400)
    failure_ttl_s: int = Field(86_400, ge=1, le=30 * 86_400)
    job_retries: int = Field(2, ge=0, le=10, description="retries of a job whose worker died")

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [k.strip() for k in value.split(",") if k.strip()]
        return value

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        if not DEVICE_PATTERN.match(value):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {value!r}")
        return value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once from the environment."""
    return Settings()
