"""HTTP schemas (pydantic v2), one family per resource.

Job specifications and results belong to the contract (``aex.contract``); here they
get their HTTP form (artifact names become URLs).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from aex.contract import results
from aex.contract.jobs import JobKind

JobState = Literal["queued", "started", "finished", "failed", "canceled"]


class Problem(BaseModel):
    """Every 4xx and 5xx answer: a sentence saying what went wrong."""

    detail: str = Field(examples=["unknown model 'resnet99'; known models: default-resnet44"])


class ValidationProblem(Problem):
    """422 for fields of the wrong type or out of bounds."""

    errors: list[dict[str, Any]] = Field(default_factory=list)


EXPLANATION_EXAMPLE: dict[str, Any] = {
    "model": "default-resnet44",
    "method": "adversarial",
    "input_size": [32, 32],
    "original_size": [480, 640],
    "resized": True,
    "rho": 0.1,
    "steps": 35,
    "predictions": [
        {"class": "cat", "index": 3, "probability": 0.61},
        {"class": "dog", "index": 5, "probability": 0.22},
    ],
    "targets": [
        {
            "class": "dog", "index": 5, "probability_before": 0.22, "probability_after": 0.71,
            "perturbation_rms": 0.1, "artifact": "explanation_5.png",
            "difference": "difference_5.png", "became_target": True,
            "sanity_check": "passed",
        }
    ],
    "warnings": [],
    "artifacts": {
        "input.png": "/v1/jobs/0f1e.../artifacts/input.png",
        "explanation_5.png": "/v1/jobs/0f1e.../artifacts/explanation_5.png",
        "difference_5.png": "/v1/jobs/0f1e.../artifacts/difference_5.png",
        "grid.png": "/v1/jobs/0f1e.../artifacts/grid.png",
    },
}


class ExplanationResult(results.ExplanationResult):
    """A finished explanation job's result as clients see it: artifacts as URLs."""

    model_config = ConfigDict(json_schema_extra={"examples": [EXPLANATION_EXAMPLE]})

    artifacts: dict[str, str] = Field(description="artifact name -> URL path")  # type: ignore[assignment]


class AttackResult(results.AttackResult):
    """A finished attack job's result as clients see it: artifacts as URLs."""

    artifacts: dict[str, str] = Field(description="artifact name -> URL path")  # type: ignore[assignment]


class ComparisonResult(results.ComparisonResult):
    """A finished comparison job's result as clients see it: artifacts as URLs."""

    artifacts: dict[str, str] = Field(description="artifact name -> URL path")  # type: ignore[assignment]


class BatchResult(results.BatchResult):
    """A finished batch's result as clients see it: artifacts as URLs."""

    artifacts: dict[str, str] = Field(description="artifact name -> URL path")  # type: ignore[assignment]


class EvaluationResult(results.EvaluationResult):
    """A finished evaluation job's result as clients see it: artifacts as URLs."""

    artifacts: dict[str, str] = Field(description="artifact name -> URL path")  # type: ignore[assignment]


class JobAccepted(BaseModel):
    """The answer to a submission (202)."""

    id: str = Field(examples=["3f5a0c9e2b7d4f1a8c6e5d4b3a291807"])
    kind: JobKind
    status: JobState
    status_url: str = Field(examples=["/v1/jobs/3f5a0c9e2b7d4f1a8c6e5d4b3a291807"])
    model: str = Field(examples=["default-resnet44"],
                       description="the model; for a comparison both, as 'a vs b'")


class JobView(BaseModel):
    """A job's state, progress and, once finished, its result."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": "0f1e2d3c4b5a69788796a5b4c3d2e1f0", "kind": "explanation", "status": "finished",
        "progress": 1.0, "model": "default-resnet44",
        "created_at": "2026-01-01T12:00:00Z", "enqueued_at": "2026-01-01T12:00:00Z",
        "started_at": "2026-01-01T12:00:01Z", "ended_at": "2026-01-01T12:00:04Z",
        "position": None, "cancel_requested": False,
        "status_url": "/v1/jobs/0f1e2d3c4b5a69788796a5b4c3d2e1f0", "error": None,
        "result": EXPLANATION_EXAMPLE,
    }]})

    id: str
    kind: JobKind
    status: JobState
    progress: float = Field(ge=0, le=1)
    model: str | None
    created_at: datetime | None
    enqueued_at: datetime | None
    started_at: datetime | None
    ended_at: datetime | None
    position: int | None = Field(description="place in the queue while queued (0 = next)")
    cancel_requested: bool
    status_url: str
    error: str | None = Field(description="why the job failed or was canceled")
    result: (BatchResult | ExplanationResult | AttackResult | ComparisonResult
             | EvaluationResult | None)
    partial: list[results.BatchImageResult] | None = Field(
        None, description="a batch's images finished so far, while it runs (artifact names "
                           "resolve under /v1/jobs/{id}/artifacts/)")


class ModelMetrics(BaseModel):
    """Measured quality of a checkpoint, when known."""

    model_config = ConfigDict(extra="allow")

    accuracy: float | None = None
    ara_attack: float | None = None
    ara_btr: float | None = None


class ModelSummary(BaseModel):
    """One registered model, as listed."""

    name: str
    aliases: list[str]
    arch: str | None
    classes: list[str]
    input_size: list[int] | None
    metrics: ModelMetrics
    bundled: bool
    url: str = Field(examples=["/v1/models/default-resnet44"])


class CardTraining(BaseModel):
    """How a model was trained (None: not recorded)."""

    command: str | None = Field(description="the command that trained it",
                                examples=["aex train --data .cache/data --arch resnet20 --robust"])
    data: str | None = Field(description="what it was trained on")
    hardware: str | None = Field(description="the machine it was trained on")
    seconds: float | None = Field(description="training time in seconds")
    epochs: int | None
    images: int | None = Field(description="training images")


class CardQuality(BaseModel):
    """What a model measured, with the settings and image counts (None: not measured)."""

    accuracy: float | None
    accuracy_images: int | None = Field(description="test images the accuracy was measured on")
    ara_attack: float | None = Field(description="accuracy-robustness area of minimal attacks")
    ara_btr: float | None = Field(description="ARA of minimal pushes below chance")
    ara_images: int | None = Field(description="test images both ARAs were measured on")
    ara_settings: dict[str, Any] | None = Field(
        description="the routine's settings for the ARAs (eps, steps, momentum, overshoot)")
    curves_url: str | None = Field(description="the ARA curves as a picture, when drawn",
                                   examples=["/v1/models/default-resnet44/ara.png"])
    explainers: dict[str, Any] | None = Field(
        None, description="explanation-quality figures per method (deletion and insertion "
                          "areas, infidelity, max-sensitivity, the randomisation check, "
                          "counterfactual validity) with their settings and image count, "
                          "from aex benchmark-explainers --save-metrics")


class ModelCard(BaseModel):
    """What a model is, how it was trained, what it measured, its limits, its licence."""

    description: str
    licence: str = Field(description="the licence of the weights")
    training: CardTraining
    quality: CardQuality
    limits: list[str] = Field(description="what the model cannot do, in sentences")


class ModelDetail(ModelSummary):
    """Everything known about a model, its card, and where to download it."""

    arch_kwargs: dict[str, Any]
    mean: list[float] | None
    std: list[float] | None
    training: dict[str, Any]
    sha256: str
    size_bytes: int
    created: str | None
    checkpoint_url: str = Field(examples=["/v1/models/default-resnet44/checkpoint"])
    card: ModelCard
    metadata: dict[str, Any] = Field(description="the checkpoint's full JSON sidecar")


class Health(BaseModel):
    """``/healthz`` and ``/readyz``."""

    status: Literal["ok", "unavailable"]
    redis: bool | None = None
    workers: int | None = None
    queue_depth: int | None = None
    detail: str | None = None
