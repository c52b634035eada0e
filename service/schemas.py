"""Request and response schemas (pydantic v2), one family per resource."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

ExplainMethod = Literal["adversarial", "saliency", "integrated_gradients", "smoothgrad", "gradcam"]
AttackMode = Literal["l2", "l2min", "btr"]
JobKind = Literal["explanation", "attack"]
JobState = Literal["queued", "started", "finished", "failed", "canceled"]


class Problem(BaseModel):
    """Every 4xx and 5xx answer: a sentence saying what went wrong."""

    detail: str = Field(examples=["unknown model 'resnet99'; known models: default-resnet44"])


class ValidationProblem(Problem):
    """422 for fields of the wrong type or out of bounds."""

    errors: list[dict[str, Any]] = Field(default_factory=list)


class ClassProbability(BaseModel):
    """One class and the model's softmax probability for it."""

    model_config = ConfigDict(populate_by_name=True)

    class_: str = Field(alias="class", examples=["cat"])
    index: int = Field(ge=0, examples=[3])
    probability: float = Field(ge=0, le=1, examples=[0.61])


class TargetResult(BaseModel):
    """The explanation toward one target class."""

    model_config = ConfigDict(populate_by_name=True)

    class_: str = Field(alias="class", examples=["dog"])
    index: int = Field(ge=0, examples=[5])
    probability_before: float = Field(examples=[0.01])
    probability_after: float | None = Field(
        examples=[0.40], description="after the perturbation (adversarial method only)"
    )
    perturbation_rms: float | None = Field(
        examples=[0.1], description="rms of δ (adversarial method only)"
    )
    artifact: str = Field(
        examples=["explanation_5.png"],
        description="the explanation image (adversarial) or heat map (classic methods)",
    )
    difference: str | None = Field(
        None, examples=["difference_5.png"], description="signed map of δ (adversarial)"
    )


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
            "difference": "difference_5.png",
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


class ExplanationResult(BaseModel):
    """The result of a finished explanation job (a contract: clients depend on it)."""

    model_config = ConfigDict(json_schema_extra={"examples": [EXPLANATION_EXAMPLE]})

    model: str
    method: ExplainMethod
    input_size: list[int] = Field(description="[H, W] the model saw")
    original_size: list[int] = Field(description="[H, W] as uploaded")
    resized: bool = Field(description="whether the upload was resized to input_size")
    rho: float | None = None
    steps: int | None = None
    predictions: list[ClassProbability] = Field(description="most likely first")
    targets: list[TargetResult]
    warnings: list[str] = Field(default_factory=list)
    artifacts: dict[str, str] = Field(description="artifact name -> URL path")


class AttackResult(BaseModel):
    """The result of a finished attack job, with the Grad-CAM comparison."""

    model: str
    mode: AttackMode
    input_size: list[int]
    original_size: list[int]
    resized: bool
    eps: float | None = None
    steps: int | None = None
    target: ClassProbability | None = Field(
        None, description="the class pushed toward (l2 mode with a target)"
    )
    success: bool = Field(description="whether the attack reached its goal")
    perturbation_rms: float
    before: ClassProbability = Field(description="prediction on the input")
    after: ClassProbability = Field(description="prediction on the adversarial image")
    predictions_before: list[ClassProbability]
    predictions_after: list[ClassProbability]
    gradcam_similarity: float = Field(description="similarity of Grad-CAM before and after")
    warnings: list[str] = Field(default_factory=list)
    artifacts: dict[str, str]


class JobAccepted(BaseModel):
    """The answer to a submission (202)."""

    id: str = Field(examples=["3f5a0c9e2b7d4f1a8c6e5d4b3a291807"])
    kind: JobKind
    status: JobState
    status_url: str = Field(examples=["/v1/jobs/3f5a0c9e2b7d4f1a8c6e5d4b3a291807"])
    model: str = Field(examples=["default-resnet44"])


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
    result: ExplanationResult | AttackResult | None


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


class ModelDetail(ModelSummary):
    """Everything known about a model, and where to download it."""

    arch_kwargs: dict[str, Any]
    mean: list[float] | None
    std: list[float] | None
    training: dict[str, Any]
    sha256: str
    size_bytes: int
    created: str | None
    checkpoint_url: str = Field(examples=["/v1/models/default-resnet44/checkpoint"])
    metadata: dict[str, Any] = Field(description="the checkpoint's full JSON sidecar")


class Health(BaseModel):
    """``/healthz`` and ``/readyz``."""

    status: Literal["ok", "unavailable"]
    redis: bool | None = None
    workers: int | None = None
    queue_depth: int | None = None
    detail: str | None = None
