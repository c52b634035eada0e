"""Model cards through HTTP (``GET /v1/models/{name}``): the bundled model's card from its
sidecar, a derived card for a registry model without one, an imported reference network's."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aex_service_testing import TINY_CLASSES, make_model, make_settings
from fastapi.testclient import TestClient
from PIL import Image

from aex.models.store import BUNDLED_DIR, ModelStore
from aex.service.app import create_app


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    make_model(tmp_path, "tiny", TINY_CLASSES, [4, 8, 8])
    return tmp_path


@pytest.fixture
def client(redis_url: str, registry: Path) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(redis_url, registry))) as client:
        yield client


def card_of(client: TestClient, name: str) -> dict[str, Any]:
    response = client.get(f"/v1/models/{name}")
    assert response.status_code == 200, response.text
    return response.json()["card"]


def edit_meta(registry: Path, name: str, **changes: Any) -> None:
    store = ModelStore(registry, include_bundled=False)
    store.write_meta(name, {**store.get(name).meta, **changes})


def test_bundled_card_from_its_sidecar_and_metadata(client: TestClient) -> None:
    sidecar = json.loads((BUNDLED_DIR / "aex-cifar10-r20.json").read_text())
    card = card_of(client, "aex-cifar10-r20")
    assert card["description"] == sidecar["card"]["description"]
    assert card["licence"].startswith("MIT")
    training, metrics = sidecar["training"], sidecar["metrics"]
    assert card["training"] == {
        "command": training["command"], "data": sidecar["card"]["data"],
        "hardware": sidecar["card"]["hardware"], "seconds": training["train_seconds"],
        "epochs": training["epochs_done"], "images": training["train_images"],
    }
    assert card["training"]["command"].startswith("aex train ")
    quality = card["quality"]
    assert quality["accuracy"] == metrics["accuracy"]
    assert quality["accuracy_images"] == metrics["n_test"] == 10_000
    assert quality["ara_attack"] == metrics["ara_attack"]
    assert quality["ara_btr"] == metrics["ara_btr"]
    assert quality["ara_images"] == metrics["ara_images"] == 1000
    assert quality["ara_settings"] == metrics["ara_settings"]
    curves = client.get(quality["curves_url"])
    assert curves.status_code == 200 and curves.content.startswith(b"\x89PNG")
    limits = card["limits"]
    assert any("32×32" in limit and "resized" in limit for limit in limits)
    assert any("airplane, automobile" in limit for limit in limits)
    assert f"wrongly on {100 * (1 - metrics['accuracy']):.0f} % of the 10,000" in " ".join(limits)
    assert set(sidecar["card"]["limits"]) <= set(limits)


def test_card_derived_for_a_model_without_one(client: TestClient, registry: Path) -> None:
    card = card_of(client, "tiny")
    assert card["description"] == (
        "A resnet20 with half-Huber ReLU activations, for 3 classes at 32×32 pixels.")
    assert card["licence"] == "not recorded in the model's metadata"
    assert card["training"] == {"command": None, "data": None, "hardware": None,
                                "seconds": None, "epochs": None, "images": None}
    assert card["quality"]["accuracy"] == 0.5 and card["quality"]["ara_attack"] is None
    assert card["quality"]["curves_url"] is None
    assert card["limits"][0].startswith("It knows only its 3 classes (cat, dog, ship)")
    assert "wrongly on 50 % of the test images" in card["limits"][2]
    # trained by `aex train`, evaluated and drawn: the card says so
    edit_meta(registry, "tiny", training={"epochs": 3, "robust": False, "adversarial": None,
                                          "command": "aex train --epochs 3",
                                          "train_seconds": 12.5, "train_images": 600})
    Image.new("RGB", (8, 8)).save(registry / "tiny.ara.png")
    card = card_of(client, "tiny")
    assert card["description"].endswith(
        "standard training (no robust additions, no adversarial training).")
    assert card["training"]["command"] == "aex train --epochs 3"
    assert card["training"]["data"] == "600 training images"
    assert card["training"]["seconds"] == 12.5 and card["training"]["epochs"] == 3
    assert card["quality"]["curves_url"] == "/v1/models/tiny/ara.png"


def test_odd_card_values_never_break_the_page(client: TestClient, registry: Path) -> None:
    edit_meta(registry, "tiny", card={"description": 3, "licence": " ", "limits": "one line"},
              training={"epochs": "many", "command": ["aex"]},
              metrics={"ara_images": "all", "ara_settings": [1]})
    card = card_of(client, "tiny")
    assert card["description"].startswith("A resnet20")
    assert card["licence"] == "not recorded in the model's metadata"
    assert card["training"]["epochs"] is None and card["training"]["command"] is None
    assert card["quality"]["ara_images"] is None and card["quality"]["ara_settings"] is None
    assert len(card["limits"]) == 2


@pytest.mark.needs_shared_data
def test_imported_reference_network_is_the_authors(
        redis_url: str, tmp_path: Path, reference_checkpoint: Callable[[str], Path]) -> None:
    from aex.models import import_reference

    source = reference_checkpoint("standard")
    import_reference(source, "paper-standard", store=ModelStore(tmp_path))
    with TestClient(create_app(make_settings(redis_url, tmp_path))) as client:
        card = card_of(client, "paper-standard")
    assert card["description"].startswith(
        "The paper authors' published standard ResNet-44 for CIFAR-10 (resnet44-standard.pt)")
    assert card["licence"].startswith("MIT, by the paper's authors")
    assert (source.parent / "LICENSE").read_text().startswith("MIT License")
    assert "LICENSE published beside resnet44-standard.pt" in card["licence"]
    assert "lossless" in card["training"]["data"]
    assert card["training"]["command"] is None
    assert any("10 classes (airplane" in limit for limit in card["limits"])
