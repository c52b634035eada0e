"""Result schemas: what a finished job returns (the worker builds them, the API shows them).

``artifacts`` here lists the names of the pictures the job stored in Redis; the API's
job view replaces it with a map from name to URL (``aex.service.schemas``).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from .jobs import AttackMode, ExplainMethod


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
    artifacts: list[str] = Field(description="names of the pictures the job stored")


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
    artifacts: list[str] = Field(description="names of the pictures the job stored")
