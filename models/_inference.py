"""A fast, eval-mode copy of a pre-activation ResNet for the routine (method.md §3).

The routine only needs the logits and the gradient of a loss with respect to the input,
with BatchNorm on its running statistics. :func:`inference_model` builds a copy of a
:class:`PreActResNet` for exactly that:

- the BatchNorm that follows each block's first convolution is folded into that
  convolution (weights scaled, a bias added);
- every other BatchNorm is a per-channel affine fused with the activation that follows it
  into one autograd function, whose backward is one multiplication by a saved derivative
  (first order only: the routine needs no double backward); HHReLU's ``1/d`` moves into
  the weights of the layer that reads it;
- parameters are plain buffers in channels-last layout (no parameter gradients);
- optionally the forward and its input gradient are compiled with ``torch.compile``.

The copy computes the same function up to float rounding (the golden parity tests hold it
to 1e-4 relative). It is a snapshot: rebuild it after the model's weights change.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ._hhrelu import HalfHuberReLU
from ._resnet import PreActBlock, PreActResNet, _normalize


class _AffineAct(torch.autograd.Function):
    """``d · act(x · scale + shift)`` for HHReLU (``d > 0``), ``relu(x · scale + shift)``
    for ReLU (``d = 0``), first order.

    HHReLU is returned times ``d`` (``c · (z − c/2)`` with ``c = clamp(z, 0, d)``, whose
    derivative is ``c``): the ``1/d`` is folded into the weights of the layer that reads
    the activation. Forward saves the derivative times ``scale``, so the backward is one
    multiplication.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, scale: torch.Tensor | None,
                shift: torch.Tensor | None, d: float) -> torch.Tensor:
        z = x if scale is None else torch.addcmul(shift, x, scale)  # type: ignore[arg-type]
        if d > 0:
            slope = z.clamp(0.0, d)
            out = torch.sub(z, slope, alpha=0.5).mul_(slope)
        else:
            out = z.clamp_min(0.0)
            slope = (z > 0).to(z.dtype)
        if scale is not None:
            slope = slope.mul_(scale)
        ctx.save_for_backward(slope)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:
        (slope,) = ctx.saved_tensors
        return grad * slope, None, None, None


def _act_width(module: nn.Module) -> float:
    """``d`` of an HHReLU module, 0 for ReLU; ``TypeError`` for anything else."""
    if isinstance(module, HalfHuberReLU):
        return float(module.d)
    if isinstance(module, nn.ReLU):
        return 0.0
    raise TypeError(f"no fused form for activation {type(module).__name__}")


def _bn_affine(bn: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode BatchNorm as ``(scale, shift)`` of shape ``(1, C, 1, 1)``."""
    if not isinstance(bn, nn.BatchNorm2d) or bn.running_mean is None or bn.running_var is None:
        raise TypeError(f"expected BatchNorm2d with running statistics, got {type(bn).__name__}")
    scale = torch.rsqrt(bn.running_var.double() + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.double()
    shift = -bn.running_mean.double() * scale
    if bn.bias is not None:
        shift = shift + bn.bias.double()
    dtype = bn.running_mean.dtype
    return scale.to(dtype).view(1, -1, 1, 1), shift.to(dtype).view(1, -1, 1, 1)


class _Conv:
    """A convolution's weight, optional bias, stride and padding as plain tensors.

    ``bn``: an eval-mode BatchNorm that follows, folded in. ``d``: the width of the
    HHReLU that precedes (0 for ReLU or none); its output arrives times ``d``
    (:class:`_AffineAct`), so the weight is divided by ``d``.
    """

    def __init__(self, conv: nn.Module, bn: nn.Module | None = None, d: float = 0.0) -> None:
        if not isinstance(conv, nn.Conv2d) or conv.groups != 1:
            raise TypeError(f"expected an ungrouped Conv2d, got {type(conv).__name__}")
        weight = conv.weight.detach()
        if d > 0:
            weight = weight / d
        bias = None if conv.bias is None else conv.bias.detach()
        if bn is not None:
            scale, shift = _bn_affine(bn)
            weight = weight * scale.view(-1, 1, 1, 1)
            bias = shift.flatten() if bias is None else bias * scale.flatten() + shift.flatten()
        self.weight = weight.contiguous(memory_format=torch.channels_last)
        self.bias = bias
        self.stride, self.padding = conv.stride, conv.padding

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding)


class _Block:
    """One :class:`PreActBlock` with its second BatchNorm folded into the first conv."""

    def __init__(self, block: PreActBlock) -> None:
        bn1, act1 = block.pre[0], block.pre[1]
        conv1, bn2, act2, conv2 = block.main
        self.scale, self.shift = _bn_affine(bn1)
        self.d1, self.d2 = _act_width(act1), _act_width(act2)
        self.conv1, self.conv2 = _Conv(conv1, bn2, self.d1), _Conv(conv2, d=self.d2)
        self.shortcut = None if block.shortcut is None else _Conv(block.shortcut, d=self.d1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        pre = _AffineAct.apply(x, self.scale, self.shift, self.d1)
        h = _AffineAct.apply(self.conv1(pre), None, None, self.d2)
        skip = x if self.shortcut is None else self.shortcut(pre)
        return self.conv2(h) + skip


class FoldedResNet(nn.Module):
    """The routine's copy of a :class:`PreActResNet` in eval mode (see the module doc).

    Args:
        net: the network; its current weights and BatchNorm running statistics are copied.

    Raises ``TypeError`` when the network's layout is not the one of method.md §2.
    """

    input_offset: torch.Tensor

    def __init__(self, net: PreActResNet) -> None:
        super().__init__()
        pipe = list(net.pipe)
        stem, stages, (bn, act, pool, head) = pipe[0], pipe[1:-4], pipe[-4:]
        if not isinstance(pool, nn.AdaptiveAvgPool2d):
            raise TypeError("expected global average pooling before the head")
        self.register_buffer("input_offset", net.input_offset.detach().clone())
        self.num_classes = net.num_classes
        self.stem = _Conv(stem)
        self.blocks: list[_Block] = []
        for stage in stages:
            for block in stage.children():
                if not isinstance(block, PreActBlock):
                    raise TypeError(f"expected PreActBlock, got {type(block).__name__}")
                self.blocks.append(_Block(block))
        self.scale, self.shift = _bn_affine(bn)
        self.d = _act_width(act)
        if not isinstance(head, nn.Conv2d) or head.kernel_size != (1, 1):
            raise TypeError("expected a 1×1 convolution as the head")
        self.head_weight = (head.weight.detach() / (self.d or 1.0)).flatten(1).contiguous()
        self.head_bias = None if head.bias is None else head.bias.detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(_normalize(x, self.input_offset).contiguous(
            memory_format=torch.channels_last))
        for block in self.blocks:
            h = block(h)
        h = _AffineAct.apply(h, self.scale, self.shift, self.d)
        return F.linear(h.mean((2, 3)), self.head_weight, self.head_bias)


def inference_model(model: nn.Module, compile: bool = False) -> nn.Module:
    """The fastest eval-mode equivalent of ``model`` for the routine.

    A :class:`PreActResNet` (ours and the paper's) becomes a :class:`FoldedResNet`; any
    other network is returned as it is. With ``compile`` the result goes through
    ``torch.compile`` (dynamic batch size; the first call compiles, which takes minutes
    on a small CPU, so it pays only in a long-lived worker).
    """
    fast: nn.Module = FoldedResNet(model) if isinstance(model, PreActResNet) else model
    if compile:
        return torch.compile(fast, dynamic=True)  # type: ignore[return-value]
    return fast
