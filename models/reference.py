"""Safe importer for the paper's published reference checkpoints.

Format: ``../shared/checkpoints/reference/README.md``. The files are legacy pickles
whose ``arch`` entry references ``__main__.cifar10_preprocess``; we load them with
``weights_only=True`` and exactly one allow-listed stand-in for that name, so any
other pickle global is refused.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from ._architectures import create_model
from .checkpoint import save_checkpoint
from .store import CheckpointEntry, ModelStore

CIFAR10_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
]
_STEM_GLOBAL = "__main__.cifar10_preprocess"
PAPER = ("Woods, Chen & Teuscher, Adversarial explanations for understanding image "
         "classification decisions and improved neural network robustness, Nature Machine "
         "Intelligence 2019")


def _reference_stem_placeholder() -> None:
    """Stand-in for the reference's stem factory; never called, only named."""


def read_reference(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a reference checkpoint's state dict and training options, safely.

    Raises ``ValueError`` when the file is missing, is not such a checkpoint, or
    carries any pickle global other than the reference stem function.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"reference checkpoint {path} does not exist")
    try:
        with torch.serialization.safe_globals([(_reference_stem_placeholder, _STEM_GLOBAL)]):
            data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        refused = [line.strip() for line in str(exc).splitlines() if "Unsupported global" in line]
        if refused:
            raise ValueError(
                f"refusing to import {path}: it carries a pickle global other than the "
                f"reference checkpoint's {_STEM_GLOBAL} ({refused[0]})"
            ) from exc
        raise ValueError(f"{path} is not a readable reference checkpoint") from exc
    except (RuntimeError, EOFError, OSError) as exc:
        raise ValueError(f"{path} is not a readable reference checkpoint: {exc}") from exc
    if not isinstance(data, dict) or not {"model_params", "training_options"} <= set(data):
        raise ValueError(f"{path} lacks 'model_params' and 'training_options'")
    return data["model_params"], data["training_options"]


def reference_arch_kwargs(options: dict[str, Any]) -> dict[str, Any]:
    """Our ``resnet`` arguments for a reference ``training_options`` dict."""
    try:
        size, _stem, blocks, widths, num_classes = options["arch"]
        mean, std = options["input_offset"]
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"unexpected reference training_options: {exc}") from exc
    if len(set(blocks)) != 1:
        raise ValueError(f"stages of unequal length {blocks} are not supported")
    return {
        "depth": 6 * int(blocks[0]) + 2,
        "widths": [int(w) for w in widths],
        "num_classes": int(num_classes),
        "act": "hhrelu" if options.get("robust_additions") else "relu",
        "input_size": int(size),
        "mean": [float(v) for v in mean],
        "std": [float(v) for v in std],
    }


def reference_card(path: Path, depth: int, training: dict[str, Any]) -> dict[str, Any]:
    """The model card's words for a published reference checkpoint (the paper authors'
    network, under their MIT licence)."""
    kinds = ["robust"] if training["robust"] else []
    if training["adversarial"]:
        kinds.append(f"adversarially trained ({training['adversarial']})")
    kind = ", ".join(kinds) or "standard"
    return {
        "description": f"The paper authors' published {kind} ResNet-{depth} for CIFAR-10 "
                       f"({path.name}), from the reference implementation of {PAPER}; "
                       "imported into this project's checkpoint format.",
        "licence": f"MIT, by the paper's authors (Copyright (c) 2019 Walt Woods): the "
                   f"LICENSE published beside {path.name}.",
        "data": "The 50,000 CIFAR-10 training images (the original, lossless set).",
        "hardware": "not recorded in the published checkpoint",
        "limits": ["Trained and published on the original (lossless) CIFAR-10; on the "
                   "JPEG copy this project tests with, the published standard network loses "
                   "over 11 points of accuracy and the robust ones about 1."],
    }


def import_reference(
    path: str | Path,
    name: str,
    *,
    store: ModelStore | None = None,
    classes: list[str] | None = None,
    aliases: list[str] | None = None,
) -> CheckpointEntry:
    """Convert a reference checkpoint into our safetensors + JSON format and register it."""
    state, options = read_reference(path)
    arch_kwargs = reference_arch_kwargs(options)
    model = create_model("preact_resnet", **arch_kwargs)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{path}: weights do not fit a reference ResNet: {exc}") from exc
    training = {
        "source": "reference",
        "source_file": Path(path).name,
        "robust": bool(options.get("robust_additions", False)),
        "adversarial": (
            ("l2min" if options.get("l2_min") else "l2")
            if options.get("adversarial_training") else None
        ),
    }
    if "robust_integration" in options:
        training["robust_integration"] = float(options["robust_integration"])
    return save_checkpoint(
        model, name, arch="preact_resnet", arch_kwargs=arch_kwargs,
        classes=classes or CIFAR10_CLASSES, training=training, aliases=aliases, store=store,
        card=reference_card(Path(path), arch_kwargs["depth"], training),
    )
