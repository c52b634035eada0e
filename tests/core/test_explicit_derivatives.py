"""The written-out derivatives of the training layers (fused train-mode BatchNorm + HHReLU,
Conv2d's double backward) against PyTorch's own, on a real ResNet-20 in float64."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from aex.models import create_model, use_explicit_derivatives
from aex.models.training import TandemChoices, robust_loss


def _network(explicit: bool, channels_last: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    net = create_model("resnet20", act="hhrelu").double()
    with torch.no_grad():  # no zero weights (the last conv of each branch starts at 0)
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    net = use_explicit_derivatives(net, explicit).train()
    return net.to(memory_format=torch.channels_last) if channels_last else net


def _images(channels_last: bool) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.rand(12, 3, 32, 32, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    return (x.contiguous(memory_format=torch.channels_last) if channels_last else x,
            torch.arange(12) % 10)


def _state(net: torch.nn.Module) -> list[torch.Tensor]:
    return ([p.grad.clone() for p in net.parameters() if p.grad is not None]
            + [b.clone() for b in net.buffers()])


def _assert_same(ours: list[torch.Tensor], theirs: list[torch.Tensor]) -> None:
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12 * float(b.abs().max() + 1))


@pytest.mark.parametrize("channels_last", [False, True])
def test_robust_loss_and_its_gradients_match_pytorchs_derivatives(channels_last: bool) -> None:
    x, y = _images(channels_last)
    choices = TandemChoices.draw(12, 10, 0.5, torch.Generator().manual_seed(2))
    results = []
    for explicit in (True, False):
        net = _network(explicit, channels_last)
        loss = robust_loss(net, x, y, 220.0, choices=choices)
        loss.total.backward()
        results.append([loss.total.detach(), loss.input_grads] + _state(net))
    assert len(results[0]) > 60  # every parameter has a gradient, every buffer compared
    _assert_same(*results)


def test_second_derivatives_through_parameter_gradients_match() -> None:
    """A penalty on the parameters' gradients differentiates the convolutions' and the
    fused layers' weight gradients (not what the robust loss uses, but supported)."""
    x, y = _images(False)
    results = []
    for explicit in (True, False):
        net = _network(explicit, False)
        params = list(net.parameters())
        grads = torch.autograd.grad(F.cross_entropy(net(x), y), params, create_graph=True)
        sum(g.square().sum() for g in grads).backward()
        results.append(_state(net))
    _assert_same(*results)


def test_first_order_training_and_eval_are_unchanged() -> None:
    x, y = _images(False)
    results = []
    for explicit in (True, False):
        net = _network(explicit, False)
        F.cross_entropy(net(x), y).backward()
        with torch.no_grad():
            logits = net.eval()(x)
        results.append([logits] + _state(net))
    _assert_same(*results)


def test_autocast_runs_pytorchs_own_layers() -> None:
    """Under autocast (``aex train --amp``) the layers fall back to PyTorch's modules, whose
    recorded casts keep the mixed-precision double backward consistent."""
    net = create_model("resnet20", act="hhrelu").train()
    x, y = torch.rand(4, 3, 32, 32), torch.arange(4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = robust_loss(net, x, y, 220.0)
    loss.total.backward()
    assert loss.logits.dtype == torch.bfloat16
    assert all(p.grad is not None and bool(p.grad.isfinite().all()) for p in net.parameters())
