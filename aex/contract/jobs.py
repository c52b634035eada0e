"""Typed job specifications: what the API enqueues and the worker runs.

A job travels through RQ as ``function(spec=<dict>)`` with RQ's JSON serializer; the
function is named by its dotted path (:data:`JOB_FUNCTIONS`), so the API never imports
the worker. The API builds (and so validates) a spec before it enqueues it and the
worker validates it again when it runs it (:func:`parse_spec`): one definition for both.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeAlias, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from aex.models.store import NAME_PATTERN

from .errors import InvalidJobError
from .targets import TargetWord

ExplainMethod: TypeAlias = Literal[
    "adversarial", "saliency", "integrated_gradients", "smoothgrad", "gradcam"
]
EXPLAIN_METHODS: tuple[str, ...] = ExplainMethod.__args__  # type: ignore[attr-defined]
AttackMode: TypeAlias = Literal["l2", "l2min", "btr"]
JobKind: TypeAlias = Literal["explanation", "attack", "comparison", "batch", "evaluation"]
EvaluationKind: TypeAlias = Literal["ara", "explainers"]

MAX_RHO = 1.0
MAX_EXPLAIN_STEPS = 200
MAX_ATTACK_EPS = 50.0
MAX_ATTACK_STEPS = 1000
MAX_TARGETS = 10_000
MAX_TARGET_SELECTIONS = 4
MAX_SEED = 2**63 - 1
MAX_BATCH_IMAGES = 1000
MAX_IMAGE_NAME = 200
MAX_EVAL_IMAGES = 1000

ModelName = Annotated[str, Field(pattern=NAME_PATTERN.pattern, description="registry name")]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$", description="weights' sha256")]
ClassIndex = Annotated[int, Field(ge=0, lt=MAX_TARGETS)]

JOB_FUNCTIONS: dict[str, str] = {
    "explanation": "aex.worker.jobs.explain",
    "attack": "aex.worker.jobs.attack",
    "comparison": "aex.worker.comparisons.compare",
    "batch": "aex.worker.batches.explain_batch",
    "evaluation": "aex.worker.evaluations.evaluate",
}
# Jobs of these kinds go to the evaluation queue (``Settings.evaluation_queue_name``), so
# that long evaluations never wait in front of explanations.
EVALUATION_KINDS = ("evaluation",)
Seed = Annotated[int, Field(ge=0, le=MAX_SEED,
                            description="seeds torch before each method (SmoothGrad's noise)")]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model: ModelName
    sha256: Sha256


class ExplanationJob(_Spec):
    """Explain the job's upload with ``method`` toward ``targets`` (resolved indices or a word).

    ``rho`` and ``steps`` apply to the adversarial method only (None: the science's
    defaults, ρ 0.1 and 35 steps).
    """

    kind: Literal["explanation"] = "explanation"
    method: ExplainMethod = "adversarial"
    targets: TargetWord | Annotated[list[ClassIndex], Field(min_length=1,
                                                            max_length=MAX_TARGETS)]
    rho: Annotated[float, Field(gt=0, le=MAX_RHO, allow_inf_nan=False)] | None = None
    steps: Annotated[int, Field(ge=1, le=MAX_EXPLAIN_STEPS)] | None = None
    seed: Seed | None = None


class AttackJob(_Spec):
    """Attack the model on the job's upload in ``mode`` and compare Grad-CAM before and after.

    ``eps`` and ``steps`` None: the science's defaults for ``mode``; ``target`` (l2 only)
    is the class index to push toward.
    """

    kind: Literal["attack"] = "attack"
    mode: AttackMode = "l2min"
    eps: Annotated[float, Field(gt=0, le=MAX_ATTACK_EPS, allow_inf_nan=False)] | None = None
    steps: Annotated[int, Field(ge=1, le=MAX_ATTACK_STEPS)] | None = None
    target: ClassIndex | None = None


TargetSelection: TypeAlias = TargetWord | Annotated[
    list[ClassIndex], Field(min_length=1, max_length=MAX_TARGETS)]


class ComparedModel(_Spec):
    """One column of a comparison: a model, and the explanation targets resolved against
    its classes (each selection a word or class indices; their union is explained)."""

    targets: Annotated[list[TargetSelection],
                       Field(min_length=1, max_length=MAX_TARGET_SELECTIONS)]


class ComparisonJob(BaseModel):
    """The paper's argument on one image, for two models side by side: each model's
    adversarial explanations toward its targets and its minimal (``l2min``) attack with
    Grad-CAM before and after, with the sizes of the changes.

    ``rho`` and ``steps`` apply to the explanations (None: the science's defaults, ρ 0.1
    and 35 steps); the attack runs with the science's defaults.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["comparison"] = "comparison"
    columns: tuple[ComparedModel, ComparedModel]
    rho: Annotated[float, Field(gt=0, le=MAX_RHO, allow_inf_nan=False)] | None = None
    steps: Annotated[int, Field(ge=1, le=MAX_EXPLAIN_STEPS)] | None = None

    @property
    def model(self) -> str:
        """Both models, as the job's ``model`` label: ``"a vs b"``."""
        return " vs ".join(column.model for column in self.columns)


class BatchImage(BaseModel):
    """One image of a batch: its label (the uploaded file's name or the archive member's
    path; a label only, never used as a path) and its own targets, if it has any."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(min_length=1, max_length=MAX_IMAGE_NAME)]
    targets: TargetSelection | None = None
    error: Annotated[str, Field(max_length=2000)] | None = Field(
        None, description="why the API could not read this image (it fails alone)")


class BatchExplanationJob(_Spec):
    """Explain several uploads (the job's upload hash, one field per image in upload order)
    with each of ``methods``, on one model load; each image toward its own targets, else
    toward ``targets``. ``rho`` and ``steps`` apply to the adversarial method (None: the
    science's defaults)."""

    kind: Literal["batch"] = "batch"
    methods: Annotated[list[ExplainMethod], Field(min_length=1, max_length=len(EXPLAIN_METHODS))]
    targets: TargetSelection
    images: Annotated[list[BatchImage], Field(min_length=1, max_length=MAX_BATCH_IMAGES)]
    rho: Annotated[float, Field(gt=0, le=MAX_RHO, allow_inf_nan=False)] | None = None
    steps: Annotated[int, Field(ge=1, le=MAX_EXPLAIN_STEPS)] | None = None
    seed: Seed | None = None

    @field_validator("methods")
    @classmethod
    def _distinct(cls, methods: list[str]) -> list[str]:
        if len(set(methods)) != len(methods):
            raise ValueError("each method may be named once")
        return methods


class EvaluationJob(_Spec):
    """Measure the model on the first ``n_images`` of the seeded evaluation order of the
    worker's evaluation data (``AEX_EVAL_DATA``): its ARAs (``ara``: accuracy and both ARAs,
    the cheaper settings when ``fast``) or its explainers (``explainers``: the measures of
    ``aex benchmark-explainers`` for ``methods``). On success the figures go into the
    model's metadata with their settings and image count."""

    kind: Literal["evaluation"] = "evaluation"
    evaluation: EvaluationKind
    n_images: Annotated[int, Field(ge=1, le=MAX_EVAL_IMAGES)]
    fast: bool = True
    methods: Annotated[list[ExplainMethod], Field(min_length=1, max_length=5)] | None = None


JobSpec: TypeAlias = (ExplanationJob | AttackJob | ComparisonJob | BatchExplanationJob
                      | EvaluationJob)
SpecT = TypeVar("SpecT", ExplanationJob, AttackJob, ComparisonJob, BatchExplanationJob,
                EvaluationJob)
SPEC_TYPES: dict[str, type[JobSpec]] = {
    "explanation": ExplanationJob, "attack": AttackJob, "comparison": ComparisonJob,
    "batch": BatchExplanationJob, "evaluation": EvaluationJob,
}


def parse_spec(data: Any, spec_type: type[SpecT]) -> SpecT:
    """Validate a spec as it comes off the queue (a dict); :class:`InvalidJobError` if it
    is not a valid ``spec_type``."""
    try:
        return spec_type.model_validate(data)
    except ValidationError as exc:
        raise InvalidJobError(f"invalid {spec_type.__name__} specification: {exc}") from exc


def job_function(spec: JobSpec) -> str:
    """The dotted path of the worker function that runs ``spec``."""
    return JOB_FUNCTIONS[spec.kind]
