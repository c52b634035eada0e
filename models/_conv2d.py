"""A 2-D convolution whose double backward uses the convolution kernels directly (method.md §5).

PyTorch differentiates a convolution's input gradient ``conv_transpose(g, W)`` with respect to
``W`` by a convolution over transposed copies of ``g`` and of the incoming gradient (batch and
channels swapped, the whole image as the kernel), which on the CPU costs several times an
ordinary weight gradient. Here that derivative is the weight gradient of the convolution with
the incoming gradient as its input, one call of the weight-gradient kernel; the derivative with
respect to ``g`` is one forward convolution. The first backward also skips the weight gradient
when the running backward pass does not use it (the robust loss's input gradient).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def _engine_uses(ctx: Any, index: int) -> bool:
    """Whether the running backward pass uses the gradient of the node's input ``index``."""
    node = ctx.next_functions[index][0]
    if node is None:
        return False
    try:
        return bool(torch._C._will_engine_execute_node(node))
    except RuntimeError:  # a leaf that autograd.grad returns: its gradient is used
        return True


def _conv_backward(grad_out: torch.Tensor, x: torch.Tensor, weight: torch.Tensor,
                   stride: tuple[int, ...], padding: tuple[int, ...],
                   mask: tuple[bool, bool]) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    grad_x, grad_w, _ = torch.ops.aten.convolution_backward(
        grad_out, x, weight, None, list(stride), list(padding), [1, 1], False, [0, 0], 1,
        [mask[0], mask[1], False])
    return grad_x, grad_w


class _Conv2dBackward(torch.autograd.Function):
    """``(g, x, W) ↦ (∂/∂x, ∂/∂W)`` of ``⟨g, conv(x, W)⟩``, each only where asked for."""

    @staticmethod
    def forward(ctx: Any, grad_out: torch.Tensor, x: torch.Tensor, weight: torch.Tensor,
                stride: tuple[int, ...], padding: tuple[int, ...], need_x: bool,
                need_weight: bool) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        ctx.save_for_backward(grad_out, x, weight)
        ctx.stride, ctx.padding = stride, padding
        ctx.set_materialize_grads(False)
        return _conv_backward(grad_out, x, weight, stride, padding, (need_x, need_weight))

    @staticmethod
    def backward(ctx: Any, gg_x: torch.Tensor | None, gg_weight: torch.Tensor | None
                 ) -> tuple[torch.Tensor | None, ...]:
        grad_out, x, weight = ctx.saved_tensors
        stride, padding = ctx.stride, ctx.padding
        need_g, need_x, need_w = ctx.needs_input_grad[:3]
        # ⟨gg_x, ∂/∂x⟩ = ⟨g, conv(gg_x, W)⟩ and ⟨gg_W, ∂/∂W⟩ = ⟨g, conv(x, gg_W)⟩.
        grad_g = grad_x = grad_w = None
        if need_g:
            if gg_x is not None:
                grad_g = F.conv2d(gg_x, weight, None, stride, padding)
            if gg_weight is not None:
                term = F.conv2d(x, gg_weight, None, stride, padding)
                grad_g = term if grad_g is None else grad_g + term
        if need_w and gg_x is not None:
            grad_w = _conv_backward(grad_out, gg_x, weight, stride, padding, (False, True))[1]
        if need_x and gg_weight is not None:
            grad_x = _conv_backward(grad_out, x, gg_weight, stride, padding, (True, False))[0]
        return grad_g, grad_x, grad_w, None, None, None, None


class _Conv2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, stride: tuple[int, ...],
                padding: tuple[int, ...]) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.padding = stride, padding
        return F.conv2d(x, weight, None, stride, padding)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        return _Conv2dBackward.apply(grad_out, x, weight, ctx.stride, ctx.padding,
                                     _engine_uses(ctx, 0), _engine_uses(ctx, 1)) + (None, None)


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` (same parameters and state dict) with a cheaper double backward.

    Used in training mode with gradients on (the robust loss) and autocast off, without
    bias, dilation or groups and with zero padding given as numbers; otherwise, or with
    ``explicit_double_backward`` False, it is ``nn.Conv2d`` itself.
    """

    explicit_double_backward = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (self.explicit_double_backward and self.training and torch.is_grad_enabled()
                and not torch.is_autocast_enabled(x.device.type) and self.bias is None
                and self.groups == 1 and self.dilation == (1, 1)
                and self.padding_mode == "zeros" and not isinstance(self.padding, str)):
            return _Conv2d.apply(x, self.weight, self.stride, self.padding)
        return super().forward(x)
