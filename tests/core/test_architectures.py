import pytest
import torch

from aex.models import HalfHuberReLU, create_model, frozen, list_models

SMALL = {
    "preact_resnet": {"depth": 8, "widths": [4, 8], "input_size": 16},
    "resnet20": {"widths": [4, 4, 8]},
    "resnet44": {"widths": [2, 2, 2]},
    "resnet56": {"widths": [2, 2, 2]},
    "resnet18": {"num_classes": 5, "input_size": 64},
    "resnet50": {"num_classes": 5, "input_size": 64},
}


def test_registry_lists_the_required_architectures() -> None:
    assert {"resnet20", "resnet44", "resnet56", "resnet18", "resnet50"} <= set(list_models())
    assert set(SMALL) == set(list_models()), "every registered model needs a tiny variant here"


@pytest.mark.parametrize("name", sorted(SMALL))
@pytest.mark.parametrize("act", ["relu", "hhrelu"])
def test_every_architecture_builds_runs_and_normalises_inside(name: str, act: str) -> None:
    model = create_model(name, act=act, **SMALL[name]).eval()
    size = SMALL[name].get("input_size", 32)
    x = torch.rand(2, 3, size, size)
    out = model(x)
    assert out.shape == (2, SMALL[name].get("num_classes", 10))
    has_hh = any(isinstance(m, HalfHuberReLU) for m in model.modules())
    has_relu = any(isinstance(m, torch.nn.ReLU) for m in model.modules())
    assert (has_hh, has_relu) == ((True, False) if act == "hhrelu" else (False, True))
    assert hasattr(model, "feature_layer")
    offsets = [b for n, b in model.named_buffers() if n.endswith("input_offset")]
    assert len(offsets) == 1 and offsets[0].shape == (2, 3)


def test_resnet44_layout_matches_the_method() -> None:
    model = create_model("resnet44", act="hhrelu")
    stages = [model.pipe[i] for i in (1, 2, 3)]
    assert [len(s) for s in stages] == [7, 7, 7]
    assert model.pipe[0].in_channels == 3 and model.pipe[0].out_channels == 16
    assert model.pipe[0].bias is None
    shortcut = stages[1][0].shortcut
    assert shortcut.kernel_size == (3, 3) and shortcut.stride == (2, 2)
    assert stages[0][0].shortcut is None
    for stage in stages:
        for block in stage:
            assert torch.count_nonzero(block.main[3].weight) == 0, "blocks start as identity"
    assert model.pipe[7].kernel_size == (1, 1) and model.pipe[7].bias is not None
    # ResNet-44 with 3×3 shortcut convs: 681,626 parameters, as in the reference checkpoints.
    assert sum(p.numel() for p in model.parameters()) == 681_626


def test_input_normalisation_is_part_of_the_model() -> None:
    model = create_model("resnet20", mean=[0.2, 0.3, 0.4], std=[0.5, 0.5, 0.5]).eval()
    with frozen(model), torch.no_grad():
        a = model(torch.full((1, 3, 32, 32), 0.2))
    model.input_offset[0] = torch.tensor([0.0, 0.0, 0.0])
    with torch.no_grad():
        b = model(torch.full((1, 3, 32, 32), 0.2))
    assert not torch.allclose(a, b)


@pytest.mark.parametrize("depth", [7, 21, 0])
def test_bad_depth_is_a_clear_error(depth: int) -> None:
    with pytest.raises(ValueError, match="6n \\+ 2"):
        create_model("preact_resnet", depth=depth)


def test_unknown_architecture_and_activation() -> None:
    with pytest.raises(ValueError, match="unknown architecture 'vgg'"):
        create_model("vgg")
    with pytest.raises(ValueError, match="unknown activation"):
        create_model("resnet20", act="gelu")
