"""Pre-activation CIFAR ResNet of method.md §2, with normalisation inside the model."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ._batchnorm_hhrelu import batchnorm_activation
from ._conv2d import Conv2d
from ._hhrelu import HalfHuberReLU, make_activation

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.247, 0.243, 0.261)


def _offset(mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    if len(mean) != len(std):
        raise ValueError("mean and std must have the same number of channels")
    if any(s <= 0 for s in std):
        raise ValueError(f"std must be positive, got {list(std)}")
    return torch.tensor([list(mean), list(std)], dtype=torch.float32)


def _normalize(x: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    return (x - offset[0].view(1, -1, 1, 1)) / offset[1].view(1, -1, 1, 1)


class InputNormalization(nn.Module):
    """``(x − mean) / std`` per channel; the buffer ``input_offset`` holds rows ``[mean, std]``."""

    input_offset: torch.Tensor

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("input_offset", _offset(mean, std))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _normalize(x, self.input_offset)


def use_explicit_derivatives(model: nn.Module, enabled: bool = True) -> nn.Module:
    """Switch the layers' written-out derivatives (on by default) on or off in ``model``:
    train-mode BatchNorm + HHReLU as one node and :class:`Conv2d`'s double backward. The
    values are the same either way (up to float rounding); off, every layer differentiates
    as PyTorch's own modules do. Returns ``model``."""
    for module in model.modules():
        if isinstance(module, HalfHuberReLU):
            module.fuse_with_batchnorm = enabled
        elif isinstance(module, Conv2d):
            module.explicit_double_backward = enabled
    return model


class PreActBlock(nn.Module):
    """``pre = act(BN(x))``; ``main = conv(act(BN(conv_stride(pre))))``; out = main + shortcut."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, act: str) -> None:
        super().__init__()
        self.pre = nn.Sequential(nn.BatchNorm2d(in_ch), make_activation(act, inplace=True))
        self.main = nn.Sequential(
            Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(out_ch),
            make_activation(act, inplace=True),
            Conv2d(out_ch, out_ch, 3, padding=1, bias=False),
        )
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_ch != out_ch:
            self.shortcut = Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = batchnorm_activation(self.pre[0], self.pre[1], x)
        skip = x if self.shortcut is None else self.shortcut(pre)
        main = batchnorm_activation(self.main[1], self.main[2], self.main[0](pre))
        return self.main[3](main) + skip


class PreActResNet(nn.Module):
    """Pre-activation ResNet for small images (method.md §2).

    Args:
        depth: 6n + 2 (20, 44, 56, ...): ``n`` blocks per stage. Default 44.
        widths: channels per stage, default ``(16, 32, 64)``; stages after the first
            start with a stride-2 block.
        num_classes: number of logits.
        act: ``"relu"`` (standard network) or ``"hhrelu"`` (robust network).
        in_channels: image channels.
        input_size: nominal square input size (any size works; global pooling).
        mean, std: per-channel normalisation statistics, applied inside the model so
            callers always pass images in ``[0, 1]``.

    The module layout matches the reference checkpoints' state-dict keys
    (``input_offset``, ``pipe.0`` … ``pipe.7``).
    """

    input_offset: torch.Tensor

    def __init__(
        self,
        depth: int = 44,
        widths: Sequence[int] = (16, 32, 64),
        num_classes: int = 10,
        act: str = "relu",
        in_channels: int = 3,
        input_size: int = 32,
        mean: Sequence[float] = CIFAR10_MEAN,
        std: Sequence[float] = CIFAR10_STD,
    ) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6 != 0:
            raise ValueError(f"depth must be 6n + 2 with n ≥ 1 (20, 44, 56, ...), got {depth}")
        if not widths or any(w <= 0 for w in widths):
            raise ValueError(f"widths must be a non-empty list of positive ints, got {widths}")
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}")
        if len(mean) != in_channels:
            raise ValueError(f"mean/std need {in_channels} channels, got {len(mean)}")
        blocks = (depth - 2) // 6
        self.depth, self.widths, self.num_classes = depth, list(widths), num_classes
        self.act, self.input_size = act, input_size
        self.register_buffer("input_offset", _offset(mean, std))
        layers: list[nn.Module] = [Conv2d(in_channels, widths[0], 3, padding=1, bias=False)]
        in_ch = widths[0]
        for i, width in enumerate(widths):
            stage = []
            for b in range(blocks):
                stride = 2 if (i > 0 and b == 0) else 1
                stage.append(PreActBlock(in_ch, width, stride, act))
                in_ch = width
            layers.append(nn.Sequential(*stage))
        layers += [
            nn.BatchNorm2d(in_ch),
            make_activation(act, inplace=True),
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(in_ch, num_classes, 1, bias=True),
        ]
        self.pipe = nn.Sequential(*layers)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Kaiming-uniform convs, BN (1, 0), last conv of each main branch zero."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for m in self.modules():
            if isinstance(m, PreActBlock):
                last = m.main[3]
                if isinstance(last, nn.Conv2d):
                    nn.init.zeros_(last.weight)

    @property
    def feature_layer(self) -> nn.Module:
        """The last stage's activation (input of the pooling): Grad-CAM's layer."""
        return self.pipe[-3]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = _normalize(x, self.input_offset)
        for layer in self.pipe[:-4]:
            h = layer(h)
        bn, act, pool, head = self.pipe[-4:]
        return head(pool(batchnorm_activation(bn, act, h))).flatten(1)
