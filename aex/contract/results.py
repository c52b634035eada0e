"""Result schemas: what a finished job returns (the worker builds them, the API shows them).

``artifacts`` here lists the names of the pictures the job stored in Redis; the API's
job view replaces it with a map from name to URL (``aex.service.schemas``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from aex.models.levels import VISIBLE_LEVELS, Visibility

from .jobs import AttackMode, EvaluationKind, ExplainMethod


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
    became_target: bool | None = Field(
        None, examples=[True],
        description="whether the model's answer on the explanation image is this class "
                    "(adversarial method only): with the probability before and after, it "
                    "tells a weak explanation from one that made its case",
    )
    sanity_check: Literal["passed", "failed"] | None = Field(
        None, examples=["passed"],
        description="the routine's sanity check (method.md §3; adversarial method only): "
                    "'failed' when the change first reached ρ after half of the steps or "
                    "never, so it may not be the smallest; raise steps",
    )


class ArrayInfo(BaseModel):
    """One full-precision array the job stored beside its pictures (a ``.npy`` artifact,
    and the tensor of the same name, less ``.npy``, in the job's safetensors file)."""

    name: str = Field(examples=["delta_5.npy"])
    shape: list[int] = Field(examples=[[3, 32, 32]])
    dtype: str = Field(examples=["float32"])
    meaning: str = Field(description="what the values are, in their units")
    picture: str | None = Field(None, examples=["difference_5.png"],
                                description="the PNG drawn from this array")


class ColourScale(BaseModel):
    """The colour scale the job's pictures of one quantity share (across methods and
    targets of an image), so that they can be compared; ``colorbar.png`` draws it."""

    quantity: Literal["attribution", "perturbation"]
    colormap: str = Field(examples=["inferno"])
    vmin: float
    vmax: float
    formula: str = Field(description="how a PNG pixel follows from the array's values")
    pictures: list[str] = Field(description="the PNGs drawn on this scale")


class Record(BaseModel):
    """How a result was made, enough to make it again (``POST /v1/jobs/{id}/rerun``)."""

    kind: str
    spec: dict[str, Any] = Field(description="the job specification as run (seed resolved)")
    model: str = Field(description="the model's name (a comparison: both, \"a vs b\")")
    sha256: str = Field(description="the weights' sha256 (a comparison: both columns', "
                                    "joined by \" vs \")")
    settings: dict[str, Any] = Field(
        description="every setting of each method, defaults included")
    versions: dict[str, str] = Field(description="aex, torch, captum, numpy, python")
    device: str = Field(examples=["cpu"])
    dtype: str = Field(examples=["float32"])
    seed: int | None = Field(description="torch's seed before each method")
    inputs: list[str] = Field(
        description="sha256 of each model input (the image as the model saw it, input.png)")
    timings: dict[str, float] = Field(description="seconds per stage")


class ExplanationResult(BaseModel):
    """The result of a finished explanation job (a contract: clients depend on it)."""

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
    arrays: list[ArrayInfo] = Field(default_factory=list,
                                    description="the explanations at full precision")
    scales: list[ColourScale] = Field(default_factory=list)
    arrays_file: str | None = Field(None, examples=["arrays.safetensors"],
                                    description="every array in one safetensors file")
    record: Record | None = None
    artifacts: list[str] = Field(description="names of the pictures the job stored")


class MethodResult(BaseModel):
    """One method's explanation of one image of a batch."""

    method: ExplainMethod
    rho: float | None = None
    steps: int | None = None
    targets: list[TargetResult]
    warnings: list[str] = Field(default_factory=list)


class BatchImageResult(BaseModel):
    """One image of a batch: its explanations by each method, or why it failed."""

    index: int = Field(ge=0, description="its place in upload order")
    name: str = Field(description="the uploaded file's name or the archive member's path")
    status: Literal["finished", "failed"]
    error: str | None = None
    input_size: list[int] | None = None
    original_size: list[int] | None = None
    resized: bool | None = None
    input: str | None = Field(None, examples=["0000-input.png"])
    predictions: list[ClassProbability] = Field(default_factory=list)
    explanations: list[MethodResult] = Field(default_factory=list)
    arrays: list[ArrayInfo] = Field(default_factory=list)
    scales: list[ColourScale] = Field(default_factory=list)
    artifacts: list[str] = Field(default_factory=list,
                                 description="names of this image's artifacts")


class BatchResult(BaseModel):
    """The result of a finished batch: one entry per image, in upload order."""

    model: str
    methods: list[ExplainMethod]
    images: list[BatchImageResult]
    failed: int = Field(ge=0, description="images that failed")
    arrays_file: str | None = Field(None, examples=["arrays.safetensors"],
                                    description="every image's arrays in one safetensors file")
    record: Record
    artifacts: list[str] = Field(description="names of everything the job stored")


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
    record: Record | None = None
    artifacts: list[str] = Field(description="names of the pictures the job stored")


class ChangeSize(BaseModel):
    """The size of a change to the image as it is shown (clipped to the displayable range),
    in 0–255 levels: ρ = 0.1 is an RMS of 25.5 levels."""

    rms: float = Field(ge=0, examples=[0.0012], description="RMS in [0, 1] units, as ρ")
    rms_levels: float = Field(ge=0, examples=[0.3], description="RMS in 0–255 levels")
    max_levels: float = Field(
        ge=0, examples=[1.7],
        description="the largest change of one value (a pixel's colour channel), in levels",
    )
    visibility: Visibility = Field(
        description=f"invisible: no value changes by more than {VISIBLE_LEVELS:g} levels; "
                    f"faint: some do, but the RMS is under {VISIBLE_LEVELS:g} levels; "
                    f"visible: the RMS is {VISIBLE_LEVELS:g} levels or more",
    )


class ComparedExplanation(BaseModel):
    """One column's adversarial explanation toward one class."""

    model_config = ConfigDict(populate_by_name=True)

    class_: str = Field(alias="class", examples=["dog"])
    index: int = Field(ge=0, examples=[5])
    probability_before: float = Field(examples=[0.22])
    probability_after: float = Field(examples=[0.71])
    size: ChangeSize
    artifact: str = Field(examples=["b-explanation_5.png"])
    difference: str = Field(examples=["b-difference_5.png"],
                            description="signed map of the change, scaled to its largest value")


class ComparedAttack(BaseModel):
    """One column's minimal attack (``l2min``) and Grad-CAM of the answer before and after."""

    mode: AttackMode = "l2min"
    eps: float = Field(description="the attack's search bound (RMS)")
    steps: int
    success: bool = Field(description="whether the answer changed")
    before: ClassProbability = Field(description="the answer on the input")
    after: ClassProbability = Field(description="the answer on the adversarial image")
    size: ChangeSize
    gradcam_similarity: float = Field(
        description="Pearson correlation of Grad-CAM before and after")
    adversarial: str = Field(examples=["a-adversarial.png"])
    difference: str = Field(examples=["a-attack_difference.png"],
                            description="signed map of the change, scaled to its largest value")
    gradcam_before: str = Field(examples=["a-gradcam_before.png"])
    gradcam_after: str = Field(examples=["a-gradcam_after.png"])


class ComparisonColumn(BaseModel):
    """What one model shows on the image."""

    column: Literal["a", "b"] = Field(description="the prefix of this column's artifacts")
    model: str
    input_size: list[int]
    original_size: list[int]
    resized: bool
    input: str = Field(examples=["a-input.png"], description="the image as the model saw it")
    predictions: list[ClassProbability] = Field(description="most likely first")
    explanations: list[ComparedExplanation]
    attack: ComparedAttack
    caption: str = Field(description="sentences stating what was measured")
    warnings: list[str] = Field(default_factory=list)


class ComparisonResult(BaseModel):
    """The result of a finished comparison job: two models side by side on one image."""

    rho: float
    steps: int
    columns: list[ComparisonColumn] = Field(min_length=2, max_length=2)
    record: Record | None = None
    artifacts: list[str] = Field(description="names of the pictures the job stored")


class EvaluationResult(BaseModel):
    """The result of a finished evaluation job: the figures, their settings and image
    count, and whether the model's metadata now holds them."""

    model: str
    evaluation: EvaluationKind
    n_images: int = Field(ge=1, description="images of the seeded evaluation order measured")
    settings: dict[str, Any] = Field(description="every setting the figures were measured with")
    figures: dict[str, Any] = Field(
        description="ara: accuracy, ara_attack, ara_btr; explainers: one row per method "
                    "(deletion and insertion areas and curves, infidelity, max-sensitivity, "
                    "the randomisation check, counterfactual validity, timings)")
    table: str | None = Field(None, description="explainers: the figures as a Markdown table")
    saved: bool = Field(description="whether the figures went into the model's metadata")
    seconds: float = Field(ge=0)
    warnings: list[str] = Field(default_factory=list)
    artifacts: list[str] = Field(description="names of the pictures the job stored")
