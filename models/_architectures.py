"""Architecture registry: ``create_model(name, **kwargs)`` and ``list_models()``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from ._hhrelu import HalfHuberReLU
from ._resnet import CIFAR10_MEAN, CIFAR10_STD, InputNormalization, PreActResNet

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Decorator: register a builder under its function name."""
    _REGISTRY[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    """Names accepted by :func:`create_model`, sorted."""
    return sorted(_REGISTRY)


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered architecture, e.g. ``create_model("resnet44", act="hhrelu")``.

    Every model takes images in ``[0, 1]`` and normalises them itself.
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown architecture {name!r}; known: {', '.join(list_models())}")
    return _REGISTRY[name](**kwargs)


def _preact(depth: int, **kwargs: Any) -> PreActResNet:
    kwargs.pop("depth", None)
    return PreActResNet(depth=depth, **kwargs)


@register_model
def preact_resnet(**kwargs: Any) -> PreActResNet:
    """Pre-activation CIFAR ResNet of any depth 6n + 2 (``depth=...``)."""
    return PreActResNet(**kwargs)


@register_model
def resnet20(**kwargs: Any) -> PreActResNet:
    """Pre-activation ResNet-20 (3 blocks per stage)."""
    return _preact(20, **kwargs)


@register_model
def resnet44(**kwargs: Any) -> PreActResNet:
    """Pre-activation ResNet-44 (7 blocks per stage), the paper's CIFAR-10 network."""
    return _preact(44, **kwargs)


@register_model
def resnet56(**kwargs: Any) -> PreActResNet:
    """Pre-activation ResNet-56 (9 blocks per stage)."""
    return _preact(56, **kwargs)


class NormalizedTorchvision(nn.Module):
    """A torchvision classifier with in-model normalisation; takes ``[0, 1]`` images."""

    def __init__(self, net: nn.Module, mean: Sequence[float], std: Sequence[float],
                 input_size: int, num_classes: int) -> None:
        super().__init__()
        self.normalize = InputNormalization(mean, std)
        self.net = net
        self.input_size, self.num_classes = input_size, num_classes

    @property
    def feature_layer(self) -> nn.Module:
        """The last residual stage: Grad-CAM's layer."""
        return self.net.layer4  # type: ignore[return-value]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(x))


def _swap_activations(module: nn.Module, act: str) -> None:
    """Replace every ``nn.ReLU`` with the named activation (both are stateless)."""
    for name, child in module.named_children():
        if isinstance(child, nn.ReLU):
            setattr(module, name, HalfHuberReLU() if act == "hhrelu" else nn.ReLU())
        else:
            _swap_activations(child, act)


def _torchvision_resnet(builder: Callable[..., nn.Module], act: str = "hhrelu",
                        num_classes: int = 1000, input_size: int = 224,
                        mean: Sequence[float] = IMAGENET_MEAN,
                        std: Sequence[float] = IMAGENET_STD,
                        in_channels: int = 3) -> NormalizedTorchvision:
    if act not in ("relu", "hhrelu"):
        raise ValueError(f"unknown activation {act!r}; use 'relu' or 'hhrelu'")
    if in_channels != 3:
        raise ValueError("torchvision ResNets take 3-channel images")
    net = builder(weights=None, num_classes=num_classes)
    _swap_activations(net, act)
    return NormalizedTorchvision(net, mean, std, input_size, num_classes)


@register_model
def resnet18(**kwargs: Any) -> NormalizedTorchvision:
    """torchvision ResNet-18 (224×224 by default), HHReLU unless ``act="relu"``."""
    from torchvision.models import resnet18 as tv_resnet18

    return _torchvision_resnet(tv_resnet18, **kwargs)


@register_model
def resnet50(**kwargs: Any) -> NormalizedTorchvision:
    """torchvision ResNet-50 (224×224 by default), HHReLU unless ``act="relu"``."""
    from torchvision.models import resnet50 as tv_resnet50

    return _torchvision_resnet(tv_resnet50, **kwargs)


__all__ = [
    "CIFAR10_MEAN", "CIFAR10_STD", "IMAGENET_MEAN", "IMAGENET_STD",
    "create_model", "list_models", "register_model",
]
