import pytest
import torch

from aex.models import HalfHuberReLU, hhrelu


def test_values_match_the_piecewise_definition() -> None:
    x = torch.tensor([-2.0, -1e-3, 0.0, 0.1, 0.25, 0.5, 0.7, 3.0])
    d = 0.5
    expected = torch.where(x <= 0, torch.zeros_like(x),
                           torch.where(x <= d, x * x / (2 * d), x - d / 2))
    torch.testing.assert_close(hhrelu(x), expected)
    torch.testing.assert_close(HalfHuberReLU()(x), expected)


def test_first_derivative_is_clamp_over_d() -> None:
    x = torch.linspace(-1, 1.5, 101, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(hhrelu(x).sum(), x)
    torch.testing.assert_close(grad, x.detach().clamp(0, 0.5) / 0.5)


def test_second_derivative_is_one_over_d_inside_the_quadratic_region() -> None:
    x = torch.tensor([-0.3, 0.1, 0.3, 0.9], dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(hhrelu(x).sum(), x, create_graph=True)
    (second,) = torch.autograd.grad(grad.sum(), x)
    torch.testing.assert_close(second, torch.tensor([0.0, 2.0, 2.0, 0.0], dtype=torch.float64))


def test_gradgradcheck() -> None:
    # Points away from the kinks at 0 and d, where finite differences are undefined.
    x = torch.tensor([-0.7, -0.2, 0.05, 0.2, 0.33, 0.45, 0.8, 2.0],
                     dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(hhrelu, (x,))
    assert torch.autograd.gradgradcheck(hhrelu, (x,))


def test_d_is_a_buffer_and_reloads() -> None:
    act = HalfHuberReLU(0.25)
    assert "d" in dict(act.named_buffers())
    other = HalfHuberReLU()
    other.load_state_dict(act.state_dict())
    torch.testing.assert_close(other(torch.tensor([0.3])), torch.tensor([0.3 - 0.125]))


def test_rejects_non_positive_d() -> None:
    with pytest.raises(ValueError, match="d > 0"):
        HalfHuberReLU(0.0)
