"""Train-mode BatchNorm followed by Half-Huber ReLU as one autograd node (method.md §2, §5).

The robust loss differentiates the network's input gradient (double backpropagation). Through
``nn.BatchNorm2d`` + :class:`HalfHuberReLU`, autograd builds that second derivative from about
forty elementwise operations and reductions per layer; here the first backward is one node whose
own backward is written out, so each layer's second derivative costs a few passes plus two calls
of the fused BatchNorm backward kernel. Values are those of the two modules in sequence, running
statistics included (up to float rounding in the second derivative).

Notation per channel (``N`` values): ``x̂ = (x − μ)·r`` with ``r = 1/√(σ² + ε)``, ``z = γ·x̂ + β``,
``y = h(z)``, ``h′(z) = clamp(z, 0, d)/d``, and the BatchNorm backward operator
``B_γ(g) = γ·r·(g − mean(g) − x̂·mean(g·x̂))``, which is self-adjoint.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ._hhrelu import HalfHuberReLU


def _per_channel(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.view((1, -1) + (1,) * (like.dim() - 2))


def _bn_backward(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, mean: torch.Tensor,
                 invstd: torch.Tensor, eps: float
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(B_weight(grad), Σ grad·x̂, Σ grad)`` by the fused train-mode BatchNorm backward."""
    gx, gw, gb = torch.ops.aten.native_batch_norm_backward(
        grad, x, weight, None, None, mean, invstd, True, eps, [True, True, True])
    return gx, gw, gb


class _BatchNormHHReLUBackward(torch.autograd.Function):
    """``(gy, x, γ, β) ↦ (∂L/∂x, ∂L/∂γ, ∂L/∂β)`` of the layer, with an explicit backward.

    ``slope`` is ``h′(z)``, ``in_ramp`` the float indicator of ``0 ≤ z ≤ d``. With
    ``g_z = gy·h′(z)``: ``∂L/∂x = B_γ(g_z)``, ``∂L/∂γ = Σ g_z·x̂``, ``∂L/∂β = Σ g_z``. The
    robust loss differentiates ``∂L/∂x`` alone; the parameters' gradients are differentiable
    too, at the cost of a few more passes.
    """

    @staticmethod
    def forward(ctx: Any, gy: torch.Tensor, x: torch.Tensor, weight: torch.Tensor,
                bias: torch.Tensor, slope: torch.Tensor, in_ramp: torch.Tensor,
                mean: torch.Tensor, invstd: torch.Tensor, eps: float, d: float
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        gz = gy * slope
        gx, gw, gb = _bn_backward(gz, x, weight, mean, invstd, eps)
        ctx.save_for_backward(gy, x, weight, slope, in_ramp, mean, invstd, gz, gx, gw, gb)
        ctx.eps, ctx.d = eps, d
        ctx.set_materialize_grads(False)
        return gx, gw, gb

    @staticmethod
    def backward(ctx: Any, ggx: torch.Tensor | None, gg_weight: torch.Tensor | None,
                 gg_bias: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:
        gy, x, weight, slope, in_ramp, mean, invstd, gz, gx, gw, gb = ctx.saved_tensors
        eps, d = ctx.eps, ctx.d
        n = x.numel() // x.shape[1]
        if ggx is None:
            ggx = torch.zeros_like(gx)
        # g_z = gy·h′(z) and ∂L/∂x = B_γ(g_z): the adjoint of B_γ is B_γ.
        ggz, sum_ggx_xhat, sum_ggx = _bn_backward(ggx, x, weight, mean, invstd, eps)
        ggz_all, grad_x_params = ggz, None
        if gg_weight is not None or gg_bias is not None:
            # The parameters' gradients Σ g_z·x̂ and Σ g_z, through g_z and through x̂.
            gg_w = torch.zeros_like(gw) if gg_weight is None else gg_weight
            gg_b = torch.zeros_like(gb) if gg_bias is None else gg_bias
            xhat = (x - _per_channel(mean, x)) * _per_channel(invstd, x)
            ggz_all = ggz + xhat * _per_channel(gg_w, x) + _per_channel(gg_b, x)
            grad_x_params = _bn_backward(gz * _per_channel(gg_w, x), x, torch.ones_like(weight),
                                         mean, invstd, eps)[0]
        grad_gy = ggz_all * slope if ctx.needs_input_grad[0] else None
        # Through h′(z) (h″ = 1/d on [0, d], as clamp's derivative): z = γ·x̂ + β.
        curvature = (ggz_all * gy).mul_(in_ramp)
        grad_x, sum_curv_xhat, sum_curv = _bn_backward(curvature, x, weight * (1.0 / d), mean,
                                                       invstd, eps)
        # Through the explicit x̂ and γ·r of B_γ: with m₁ = mean(g_z), m₂ = mean(g_z·x̂),
        # ∂L/∂(γr) = Σ ggx·g_z − m₁·Σ ggx − m₂·Σ ggx·x̂.
        m1, m2 = gb / n, gw / n
        dot = torch.mul(ggx, gz, out=curvature).sum([0, *range(2, x.dim())])
        grad_scale = dot - m1 * sum_ggx - m2 * sum_ggx_xhat
        grad_invstd = weight * grad_scale
        # ∂x̂/∂x gives B₁ of the x̂-gradient −γr·m₂·ggx − γr·(Σ ggx·x̂ / N)·g_z, which is
        # −r·m₂·ggz − r·(Σ ggx·x̂ / N)·gx; r's own dependence on x adds −r²/N·x̂·∂L/∂r.
        grad_x.addcmul_(ggz, _per_channel(-invstd * m2, x))
        grad_x.addcmul_(gx, _per_channel(-invstd * sum_ggx_xhat / n, x))
        k = -grad_invstd * invstd.square() * invstd / n
        grad_x.addcmul_(x, _per_channel(k, x)).sub_(_per_channel(k * mean, x))
        if grad_x_params is not None:
            grad_x += grad_x_params
        grad_weight = invstd * grad_scale + sum_curv_xhat * (1.0 / d)
        grad_bias = sum_curv * (1.0 / d)
        return (grad_gy, grad_x, grad_weight, grad_bias) + (None,) * 6


class _BatchNormHHReLU(torch.autograd.Function):
    """Forward: ``h(BatchNorm_train(x))``, updating the running statistics in place."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                running_mean: torch.Tensor | None, running_var: torch.Tensor | None,
                momentum: float, eps: float, d: float) -> torch.Tensor:
        z, mean, invstd = torch.native_batch_norm(x, weight, bias, running_mean, running_var,
                                                  True, momentum, eps)
        # In place where possible: writing fresh memory costs more than the arithmetic.
        c = z.clamp(0.0, d)
        # A float indicator: comparisons into bool and masking are several times slower.
        in_ramp = torch.eq(c, z, out=torch.empty_like(z))
        y = z.sub_(c, alpha=0.5)
        slope = c.mul_(1.0 / d)
        ctx.save_for_backward(x, weight, bias, slope, in_ramp, mean, invstd)
        ctx.eps, ctx.d = eps, d
        return y.mul_(slope)

    @staticmethod
    def backward(ctx: Any, gy: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight, bias, slope, in_ramp, mean, invstd = ctx.saved_tensors
        gx, gw, gb = _BatchNormHHReLUBackward.apply(gy, x, weight, bias, slope, in_ramp, mean,
                                                    invstd, ctx.eps, ctx.d)
        return gx, gw, gb, None, None, None, None, None


def batchnorm_activation(bn: nn.Module, act: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``act(bn(x))``; one fused node when ``bn`` is an affine BatchNorm in training mode,
    ``act`` a :class:`HalfHuberReLU` that allows it, gradients are on, autocast is off and
    no hooks watch either module."""
    if not (isinstance(bn, _BatchNorm) and isinstance(act, HalfHuberReLU)
            and act.fuse_with_batchnorm and bn.training and bn.affine
            and torch.is_grad_enabled() and not torch.is_autocast_enabled(x.device.type)
            and not (bn._forward_hooks or bn._forward_pre_hooks or act._forward_hooks
                     or act._forward_pre_hooks)):
        return act(bn(x))
    momentum = 0.0 if bn.momentum is None else bn.momentum
    if bn.track_running_stats and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        if bn.momentum is None:
            momentum = 1.0 / float(bn.num_batches_tracked)
    running_mean = bn.running_mean if bn.track_running_stats else None
    running_var = bn.running_var if bn.track_running_stats else None
    return _BatchNormHHReLU.apply(x, bn.weight, bn.bias, running_mean, running_var, momentum,
                                  bn.eps, act._d)
