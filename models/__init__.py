"""The science of the project (``aex.models``): robust networks, the perturbation routine,
adversarial explanations, ARA, classic explainers and training (method.md).

Public modules: :mod:`aex.models.store` (the registry, torch-free: the API uses it),
:mod:`aex.models.levels` (sizes of changes in 0–255 levels, torch-free: the contract
uses it), :mod:`aex.models.checkpoint`, :mod:`aex.models.data`, :mod:`aex.models.render`,
:mod:`aex.models.reference`, :mod:`aex.models.training` and :mod:`aex.models.quality`
(explanation-quality measures). The names below are
imported lazily at run time, so ``import aex.models.store`` does not import torch; type
checkers and editors read the real imports in the ``TYPE_CHECKING`` block.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._ara import (
        COARSE_RELATIVE_RESOLUTION,
        FAST_SETTINGS,
        REFERENCE_SETTINGS,
        ARAResult,
        ara,
        ara_from_radii,
        ara_on_dataset,
        evaluate_accuracy,
        tail_settings,
    )
    from ._architectures import create_model, list_models, register_model
    from ._classic import CLASSIC_METHODS, ClassicExplainer
    from ._compare import (
        ATTACK_DEFAULTS,
        ATTACK_EPS,
        ATTACK_STEPS,
        AttackComparison,
        attack_comparison,
        map_similarity,
    )
    from ._explain import AdversarialExplainer, Explanation
    from ._hhrelu import HalfHuberReLU, hhrelu
    from ._inference import FoldedResNet, inference_model
    from ._perturb import (
        MODES,
        MinimalAttack,
        PerturbResult,
        SanityCheckError,
        frozen,
        perturb,
        rms,
    )
    from ._resnet import PreActResNet, use_explicit_derivatives
    from ._sidebyside import ExplainAndAttack, explain_and_attack
    from .checkpoint import LoadedModel, load_checkpoint, save_checkpoint, update_metrics
    from .data import ImageSet, evaluation_indices, extract_tar, image_tensor, load_image_folder
    from .levels import VISIBLE_LEVELS, ChangeSize, Visibility, change_sizes
    from .reference import CIFAR10_CLASSES, import_reference, read_reference
    from .store import CheckpointEntry, ModelNotFoundError, ModelStore

_EXPORTS: dict[str, str] = {
    # networks
    "HalfHuberReLU": "._hhrelu",
    "hhrelu": "._hhrelu",
    "PreActResNet": "._resnet",
    "use_explicit_derivatives": "._resnet",
    "create_model": "._architectures",
    "list_models": "._architectures",
    "register_model": "._architectures",
    # checkpoints and the registry
    "ModelStore": ".store",
    "ModelNotFoundError": ".store",
    "CheckpointEntry": ".store",
    "LoadedModel": ".checkpoint",
    "load_checkpoint": ".checkpoint",
    "save_checkpoint": ".checkpoint",
    "update_metrics": ".checkpoint",
    "import_reference": ".reference",
    "read_reference": ".reference",
    "CIFAR10_CLASSES": ".reference",
    # data
    "ImageSet": ".data",
    "load_image_folder": ".data",
    "evaluation_indices": ".data",
    "extract_tar": ".data",
    "image_tensor": ".data",
    # the routine and what uses it
    "perturb": "._perturb",
    "rms": "._perturb",
    "frozen": "._perturb",
    "MODES": "._perturb",
    "PerturbResult": "._perturb",
    "SanityCheckError": "._perturb",
    "MinimalAttack": "._perturb",
    "inference_model": "._inference",
    "FoldedResNet": "._inference",
    "AdversarialExplainer": "._explain",
    "Explanation": "._explain",
    "ara": "._ara",
    "ara_from_radii": "._ara",
    "ara_on_dataset": "._ara",
    "ARAResult": "._ara",
    "evaluate_accuracy": "._ara",
    "REFERENCE_SETTINGS": "._ara",
    "FAST_SETTINGS": "._ara",
    "tail_settings": "._ara",
    "COARSE_RELATIVE_RESOLUTION": "._ara",
    "ClassicExplainer": "._classic",
    "CLASSIC_METHODS": "._classic",
    "attack_comparison": "._compare",
    "AttackComparison": "._compare",
    "map_similarity": "._compare",
    "ATTACK_DEFAULTS": "._compare",
    "ATTACK_EPS": "._compare",
    "ATTACK_STEPS": "._compare",
    # the paper's argument, one network at a time, with sizes people grasp
    "ChangeSize": ".levels",
    "Visibility": ".levels",
    "VISIBLE_LEVELS": ".levels",
    "change_sizes": ".levels",
    "ExplainAndAttack": "._sidebyside",
    "explain_and_attack": "._sidebyside",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'aex.models' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value
    return value
