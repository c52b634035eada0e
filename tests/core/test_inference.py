"""The routine's inference copy (BatchNorm folded, fused activations) against the network
itself and against the reference implementation's golden outputs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from aex.models import AdversarialExplainer, ModelStore, create_model, load_checkpoint, perturb
from aex.models._inference import FoldedResNet, inference_model


def _trained_bn(act: str) -> torch.nn.Module:
    """A ResNet-20 whose BatchNorms have non-trivial weights and running statistics."""
    torch.manual_seed(0)
    net = create_model("resnet20", act=act)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.weight.normal_(0, 0.2)
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.2)
        net.train()
        net(torch.rand(32, 3, 32, 32))
    return net.eval()


def _input_grad(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    return torch.autograd.grad(F.cross_entropy(model(x), y, reduction="sum"), x)[0]


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("act", ["hhrelu", "relu"])
def test_folded_copy_computes_the_same_logits_and_input_gradient(act: str) -> None:
    """In float64, so that only the algebra of the folding is tested."""
    net = _trained_bn(act).double()
    fast = inference_model(net)
    assert isinstance(fast, FoldedResNet)
    x = torch.rand(5, 3, 32, 32, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    y = torch.tensor([0, 3, 5, 7, 9])
    with torch.no_grad():
        logits = net(x)
    assert logits.std() > 0.1  # the network is not trivially constant
    with torch.no_grad():
        assert _relative(fast(x), logits) < 1e-10
    assert _relative(_input_grad(fast, x, y), _input_grad(net, x, y)) < 1e-10
    assert all(p.grad is None for p in net.parameters())


def test_other_networks_are_used_as_they_are(tiny: torch.nn.Module) -> None:
    assert inference_model(tiny) is tiny


def test_batched_explanations_equal_one_image_at_a_time() -> None:
    net = _trained_bn("hhrelu")
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    explainer = AdversarialExplainer(net)
    together = explainer.explain(x, targets=[1, 4], steps=6)
    assert together.image_index.tolist() == [0, 0, 1, 1, 2, 2]
    for i in range(3):
        alone = explainer.explain(x[i:i + 1], targets=[1, 4], steps=6)
        rows = together.image_index == i
        assert torch.allclose(together.images[rows], alone.images, atol=1e-5)
        assert torch.allclose(together.prob_after[rows], alone.prob_after, atol=1e-5)


@pytest.fixture(scope="module")
def golden(shared_dir: Path) -> dict[str, dict[str, torch.Tensor]]:
    folder = shared_dir / "golden" / "reference"
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent")
    return {name: load_file(folder / f"resnet44-{name}.safetensors")
            for name in ("robust", "standard")}


@pytest.mark.needs_shared_data
@pytest.mark.parametrize("name", ["robust", "standard"])
def test_folded_logits_match_the_reference(name: str, reference_store: ModelStore,
                                           golden: dict[str, dict[str, torch.Tensor]]) -> None:
    model = load_checkpoint(f"ref-{name}", store=reference_store).model
    with torch.no_grad():
        logits = inference_model(model)(golden[name]["images"])
    assert _relative(logits, golden[name]["logits"]) < 1e-5


@pytest.mark.needs_shared_data
def test_fast_explanations_match_the_reference(
        reference_store: ModelStore, golden: dict[str, dict[str, torch.Tensor]]) -> None:
    """12 targets × 35 steps on the robust network: the routine (on the inference copy),
    the routine on the network as it is and ``explain`` (all 10 classes) give the
    reference's explanation images (which are not clipped)."""
    g = golden["robust"]
    model = load_checkpoint("ref-robust", store=reference_store).model
    targets = g["explain_targets"]
    batch = g["images"][:1].expand(len(targets), -1, -1, -1).contiguous()
    settings = {"mode": "encourage", "eps": 0.1, "steps": 35, "overshoot": 5.0}
    fast = perturb(model, batch, targets, **settings)  # type: ignore[arg-type]
    # Wrapped, the network is not a PreActResNet, so the routine runs on it as it is.
    plain = perturb(torch.nn.Sequential(model), batch, targets, **settings)  # type: ignore[arg-type]
    assert _relative(fast.x_adv, g["explain_images"]) < 1e-4
    assert _relative(plain.x_adv, g["explain_images"]) < 1e-4
    assert _relative(fast.delta, plain.delta) < 1e-4
    every = AdversarialExplainer(model).explain(g["images"][:1], targets="all", clip=False)
    assert every.target_index.tolist() == targets[2:].tolist() == list(range(10))
    assert _relative(every.images, g["explain_images"][2:]) < 1e-4
