"""The science of the project: robust networks, the perturbation routine, adversarial
explanations, ARA, classic explainers and training (method.md).

Public names are imported lazily, so ``import models`` (and the torch-free
``models.store`` used by the HTTP front end) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    # networks
    "HalfHuberReLU": "._hhrelu",
    "hhrelu": "._hhrelu",
    "PreActResNet": "._resnet",
    "create_model": "._architectures",
    "list_models": "._architectures",
    "register_model": "._architectures",
    # checkpoints
    "ModelStore": "._store",
    "ModelNotFoundError": "._store",
    "CheckpointEntry": "._store",
    "LoadedModel": "._checkpoint",
    "load_checkpoint": "._checkpoint",
    "save_checkpoint": "._checkpoint",
    "update_metrics": "._checkpoint",
    "import_reference": "._reference",
    "CIFAR10_CLASSES": "._reference",
    # data
    "ImageSet": "._data",
    "load_image_folder": "._data",
    "evaluation_indices": "._data",
    # the routine and what uses it
    "perturb": "._perturb",
    "PerturbResult": "._perturb",
    "SanityCheckError": "._perturb",
    "MinimalAttack": "._perturb",
    "AdversarialExplainer": "._explain",
    "Explanation": "._explain",
    "ara": "._ara",
    "ARAResult": "._ara",
    "evaluate_accuracy": "._ara",
    "ClassicExplainer": "._classic",
    "CLASSIC_METHODS": "._classic",
    "attack_comparison": "._compare",
    "AttackComparison": "._compare",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'models' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value
    return value
