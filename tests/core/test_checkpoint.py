import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from aex.models import (
    ModelNotFoundError,
    ModelStore,
    create_model,
    load_checkpoint,
    save_checkpoint,
)
from aex.models.checkpoint import update_metrics

KW = {"act": "hhrelu", "widths": [4, 8, 8], "num_classes": 3, "input_size": 16,
      "mean": [0.5, 0.4, 0.3], "std": [0.2, 0.2, 0.2]}
CLASSES = ["cat", "dog", "ship"]


def _save(store: ModelStore, name: str = "tiny", **extra: object) -> torch.nn.Module:
    torch.manual_seed(0)
    model = create_model("resnet20", **KW)
    save_checkpoint(model, name, arch="resnet20", arch_kwargs=KW, classes=CLASSES,
                    training={"robust": True}, metrics={"accuracy": 0.5}, store=store,
                    **extra)  # type: ignore[arg-type]
    return model


def test_round_trip_gives_identical_outputs_and_metadata(tmp_path: Path) -> None:
    store = ModelStore(tmp_path, include_bundled=False)
    model = _save(store).eval()
    loaded = load_checkpoint("tiny", store=store)
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), model(x))
    meta = json.loads((tmp_path / "tiny.json").read_text())
    assert meta["classes"] == CLASSES and meta["input_size"] == [16, 16]
    assert meta["mean"] == KW["mean"] and meta["arch_kwargs"] == KW
    assert meta["training"] == {"robust": True} and meta["metrics"] == {"accuracy": 0.5}
    assert len(meta["sha256"]) == 64 and meta["created"]
    assert not loaded.model.training


def test_files_are_safetensors_and_json_only(tmp_path: Path) -> None:
    _save(ModelStore(tmp_path, include_bundled=False))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.json", "tiny.safetensors"]
    header_len = int.from_bytes((tmp_path / "tiny.safetensors").read_bytes()[:8], "little")
    header = json.loads((tmp_path / "tiny.safetensors").read_bytes()[8:8 + header_len])
    assert "pipe.0.weight" in header


def test_tampered_weights_are_refused(tmp_path: Path) -> None:
    store = ModelStore(tmp_path, include_bundled=False)
    _save(store)
    data = bytearray((tmp_path / "tiny.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (tmp_path / "tiny.safetensors").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="sha256"):
        load_checkpoint("tiny", store=store)


def test_metadata_that_does_not_match_the_weights_is_refused(tmp_path: Path) -> None:
    store = ModelStore(tmp_path, include_bundled=False)
    _save(store)
    meta = json.loads((tmp_path / "tiny.json").read_text())
    meta["arch_kwargs"]["widths"] = [4, 8, 16]
    (tmp_path / "tiny.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="do not match the architecture"):
        load_checkpoint("tiny", store=store)


def test_load_by_path_and_alias(tmp_path: Path) -> None:
    store = ModelStore(tmp_path, include_bundled=False)
    _save(store, aliases=["default"])
    assert load_checkpoint(tmp_path / "tiny.json").name == "tiny"
    assert load_checkpoint(tmp_path / "tiny.safetensors").name == "tiny"
    assert store.get("default").name == "tiny"


def test_unknown_model_names_the_model(tmp_path: Path) -> None:
    store = ModelStore(tmp_path, include_bundled=False)
    _save(store)
    with pytest.raises(ModelNotFoundError, match="'nope'.*tiny"):
        store.get("nope")


@pytest.mark.parametrize("name", ["../evil", "a/b", "", ".hidden", "x" * 65, "a b"])
def test_invalid_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="invalid model name"):
        _save(ModelStore(tmp_path, include_bundled=False), name=name)


def test_lookup_never_turns_a_name_into_a_path(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "reg", include_bundled=False)
    _save(ModelStore(tmp_path, include_bundled=False), name="outside")
    with pytest.raises(ModelNotFoundError):
        store.get("../outside")


def test_update_metrics(tmp_path: Path) -> None:
    store = ModelStore(tmp_path, include_bundled=False)
    _save(store)
    update_metrics("tiny", {"ara_btr": 0.03}, store=store)
    assert store.get("tiny").meta["metrics"] == {"accuracy": 0.5, "ara_btr": 0.03}


def test_class_count_must_match(tmp_path: Path) -> None:
    model = create_model("resnet20", **KW)
    with pytest.raises(ValueError, match="2 class names for a 3-class network"):
        save_checkpoint(model, "bad", arch="resnet20", arch_kwargs=KW, classes=["a", "b"],
                        store=ModelStore(tmp_path))


def test_normalisation_and_input_size_come_from_the_weights(tmp_path: Path) -> None:
    store = ModelStore(tmp_path, include_bundled=False)
    model = create_model("resnet20", **KW)
    bare = {k: v for k, v in KW.items() if k not in ("mean", "std", "input_size")}
    entry = save_checkpoint(model, "derived", arch="resnet20", arch_kwargs=bare,
                            classes=CLASSES, store=store)
    assert entry.meta["mean"] == KW["mean"] and entry.meta["std"] == KW["std"]
    assert entry.meta["input_size"] == [16, 16]
    assert entry.meta["arch_kwargs"]["mean"] == KW["mean"]
    # Metadata that contradicts the buffer the network normalises with is refused.
    with pytest.raises(ValueError, match="disagrees with the model's input_offset buffer"):
        save_checkpoint(create_model("resnet20", **bare), "wrong", arch="resnet20",
                        arch_kwargs=KW, classes=CLASSES, store=store)
    with pytest.raises(ValueError, match="input_size 32 disagrees"):
        save_checkpoint(model, "wrong", arch="resnet20", arch_kwargs={**KW, "input_size": 32},
                        classes=CLASSES, store=store)


@pytest.mark.parametrize("key", ["mean", "std"])
def test_loading_refuses_metadata_that_disagrees_with_the_weights(tmp_path: Path,
                                                                  key: str) -> None:
    store = ModelStore(tmp_path, include_bundled=False)
    _save(store)
    path = tmp_path / "tiny.json"
    meta = json.loads(path.read_text())
    meta[key] = [0.9, 0.9, 0.9]
    path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=f"metadata {key} .* disagrees with the input_offset"):
        load_checkpoint("tiny", store=store)


def test_cli_models_list_json(tmp_path: Path) -> None:
    store = ModelStore(tmp_path, include_bundled=False)
    _save(store, aliases=["mine"])
    out = subprocess.run(
        [sys.executable, "-m", "aex.cli", "models", "list", "--json", "--model-dir", str(tmp_path)],
        capture_output=True, text=True, check=True,
    ).stdout
    listed = {e["name"]: e for e in json.loads(out)}
    assert listed["tiny"]["aliases"] == ["mine"]
    assert listed["tiny"]["metrics"] == {"accuracy": 0.5}


def test_an_alias_is_listed_only_on_the_checkpoint_it_resolves_to(tmp_path: Path) -> None:
    """A registry checkpoint aliased ``default`` takes the alias from the bundled model,
    in lookups and in listings alike; an alias that is another checkpoint's name is that
    checkpoint; two registry checkpoints sharing an alias: the first name has it."""
    store = ModelStore(tmp_path)
    bundled = store.get("default")
    assert bundled.bundled and "default" in bundled.aliases
    _save(store, aliases=["default", "other", "shared"])
    _save(store, name="other", aliases=["shared"])
    entries = store.entries()
    assert store.get("default").name == "tiny"
    assert entries["tiny"].aliases == ["default"]  # "shared" goes to the first name
    assert "default" not in entries[bundled.name].aliases
    assert entries["other"].aliases == ["shared"]
    assert store.get("other").name == "other" and store.get("shared").name == "other"
    listed = [e.summary()["aliases"] for e in store.list()]
    assert sum(aliases.count("default") for aliases in listed) == 1
