"""Save and load checkpoints as safetensors weights plus a JSON metadata sidecar.

Loading never unpickles: weights come from safetensors, everything else from JSON.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ._architectures import create_model
from .store import FORMAT, CheckpointEntry, ModelStore, read_meta, sha256_file, validate_name


@dataclass
class LoadedModel:
    """A network rebuilt from a checkpoint, in eval mode, with its metadata."""

    name: str
    model: nn.Module
    meta: dict[str, Any]

    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])

    @property
    def input_size(self) -> tuple[int, int]:
        h, w = self.meta["input_size"]
        return int(h), int(w)

    @property
    def channels(self) -> int:
        """Image channels the network takes."""
        return len(self.meta.get("mean", [0, 0, 0]))

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def build_model(meta: dict[str, Any]) -> nn.Module:
    """Rebuild the (untrained) network that a metadata dict describes."""
    kwargs = dict(meta["arch_kwargs"])
    return create_model(str(meta["arch"]), **kwargs)


def model_normalisation(model: nn.Module) -> tuple[list[float], list[float]] | None:
    """The ``[mean, std]`` rows of the model's ``input_offset`` buffer (method.md §2), or
    None when it has none."""
    for name, buffer in model.named_buffers():
        if name.split(".")[-1] == "input_offset":
            rows = buffer.detach().float().cpu()
            return [float(f"{v:.7g}") for v in rows[0]], [float(f"{v:.7g}") for v in rows[1]]
    return None


def _same(a: Any, b: Any) -> bool:
    """Two normalisation lists equal to float32 precision."""
    return (isinstance(a, list | tuple) and isinstance(b, list | tuple) and len(a) == len(b)
            and all(abs(float(x) - float(y)) <= 1e-6 * max(1.0, abs(float(y)))
                    for x, y in zip(a, b, strict=True)))


def _derived_arch_kwargs(model: nn.Module, arch_kwargs: dict[str, Any]) -> dict[str, Any]:
    """``arch_kwargs`` with ``mean``, ``std`` and ``input_size`` taken from the model.

    The weights are the truth (the model normalises with its ``input_offset`` buffer):
    values given in ``arch_kwargs`` must agree with them, or ``ValueError``.
    """
    kwargs = dict(arch_kwargs)
    found = model_normalisation(model)
    if found is not None:
        for key, value in zip(("mean", "std"), found, strict=True):
            if key in kwargs and not _same(kwargs[key], value):
                raise ValueError(
                    f"arch_kwargs {key} {kwargs[key]} disagrees with the model's input_offset "
                    f"buffer ({value}): the network normalises with the buffer; build it "
                    f"with the same {key}"
                )
            kwargs.setdefault(key, value)
    size = getattr(model, "input_size", None)
    if isinstance(size, int):
        if "input_size" in kwargs and int(kwargs["input_size"]) != size:
            raise ValueError(f"arch_kwargs input_size {kwargs['input_size']} disagrees with "
                             f"the model's input_size {size}")
        kwargs.setdefault("input_size", size)
    return kwargs


def check_consistent(name: str, model: nn.Module, meta: dict[str, Any]) -> None:
    """``ValueError`` when a loaded checkpoint's metadata and weights disagree about the
    normalisation or the input size (one source of truth: the weights)."""
    found = model_normalisation(model)
    kwargs = meta.get("arch_kwargs", {})
    if found is not None:
        for key, value in zip(("mean", "std"), found, strict=True):
            for where, given in (("metadata", meta.get(key)), ("arch_kwargs", kwargs.get(key))):
                if given is not None and not _same(given, value):
                    raise ValueError(
                        f"checkpoint {name!r}: its {where} {key} {given} disagrees with the "
                        f"input_offset buffer in its weights ({value}); re-save it from the "
                        "network"
                    )
    size = meta.get("input_size")
    declared = kwargs.get("input_size")
    if size is not None and declared is not None and list(size) != [declared, declared]:
        raise ValueError(f"checkpoint {name!r}: input_size {size} disagrees with arch_kwargs "
                         f"input_size {declared}")


def _state_dict_for_saving(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}


def save_checkpoint(
    model: nn.Module,
    name: str,
    *,
    arch: str,
    arch_kwargs: dict[str, Any],
    classes: list[str],
    training: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    aliases: list[str] | None = None,
    store: ModelStore | None = None,
    card: dict[str, Any] | None = None,
) -> CheckpointEntry:
    """Write ``<name>.safetensors`` and ``<name>.json`` into the registry, atomically.

    Args:
        model: the network (any device); its state dict is saved on the CPU.
        name: registry name (letters, digits, ``.``, ``_``, ``-``).
        arch, arch_kwargs: what :func:`create_model` needs to rebuild it. ``mean``,
            ``std`` and ``input_size`` are taken from the model (its ``input_offset``
            buffer and ``input_size``) where it has them; given ones must agree.
        classes: class names in logit order.
        training: the fully resolved training options.
        metrics: ``accuracy``, ``ara_attack``, ``ara_btr`` ... when known.
        aliases: other names that resolve to this checkpoint.
        card: the model card's words that the metadata cannot give (``description``,
            ``licence``, ``data``, ``hardware``, ``limits``), stored as ``card``.
    """
    validate_name(name)
    arch_kwargs = _derived_arch_kwargs(model, arch_kwargs)
    num_classes = arch_kwargs.get("num_classes")
    if num_classes is not None and num_classes != len(classes):
        raise ValueError(f"{len(classes)} class names for a {num_classes}-class network")
    for key in ("input_size", "mean", "std"):
        if key not in arch_kwargs:
            raise ValueError(f"arch_kwargs must contain {key!r}")
    store = store or ModelStore()
    store.root.mkdir(parents=True, exist_ok=True)
    weights = store.root / f"{name}.safetensors"
    tmp = weights.with_suffix(".safetensors.tmp")
    save_file(_state_dict_for_saving(model), str(tmp), metadata={"format": FORMAT, "arch": arch})
    os.replace(tmp, weights)
    size = int(arch_kwargs["input_size"])
    meta = {
        "format": FORMAT,
        "name": name,
        "arch": arch,
        "arch_kwargs": arch_kwargs,
        "classes": list(classes),
        "input_size": [size, size],
        "mean": list(arch_kwargs["mean"]),
        "std": list(arch_kwargs["std"]),
        "training": training or {},
        "metrics": metrics or {},
        "aliases": list(aliases or []),
        "weights": weights.name,
        "sha256": sha256_file(weights),
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    if card:
        meta["card"] = card
    meta_path = store.write_meta(name, meta)
    return CheckpointEntry(name, meta_path, weights, meta, bundled=False)


def update_metrics(name: str, metrics: dict[str, Any], store: ModelStore | None = None) -> None:
    """Merge ``metrics`` into a registered checkpoint's metadata."""
    store = store or ModelStore()
    entry = store.get(name)
    if entry.bundled:
        raise ValueError(f"model {name!r} is bundled with the package and read-only")
    meta = dict(entry.meta)
    meta["metrics"] = {**meta.get("metrics", {}), **metrics}
    store.write_meta(entry.name, meta)


def _entry_from_path(path: Path) -> CheckpointEntry:
    meta_path = path if path.suffix == ".json" else path.with_suffix(".json")
    if not meta_path.is_file():
        raise ValueError(f"{path}: no metadata sidecar {meta_path.name} beside it")
    meta = read_meta(meta_path)
    weights = meta_path.parent / Path(str(meta["weights"])).name
    if not weights.is_file():
        raise ValueError(f"{meta_path}: weights file {weights.name} is missing")
    return CheckpointEntry(meta_path.stem, meta_path, weights, meta, bundled=False)


def load_checkpoint(
    name_or_path: str | Path,
    *,
    store: ModelStore | None = None,
    device: str | torch.device = "cpu",
    verify: bool = True,
) -> LoadedModel:
    """Load a checkpoint by registry name/alias or by path (``.json`` or ``.safetensors``).

    The weights' sha256 is checked against the metadata (``verify=True``), the state
    dict must match the rebuilt architecture exactly, and the metadata's normalisation
    and input size must agree with the weights; any failure raises ``ValueError``. The
    model comes back in eval mode on ``device``.
    """
    path = Path(name_or_path)
    if path.suffix in (".json", ".safetensors") and path.exists():
        entry = _entry_from_path(path)
    else:
        entry = (store or ModelStore()).get(str(name_or_path))
    if verify and sha256_file(entry.weights_path) != entry.sha256:
        raise ValueError(
            f"checkpoint {entry.name!r}: weights file does not match the sha256 in its metadata"
        )
    model = build_model(entry.meta)
    state = load_file(str(entry.weights_path), device="cpu")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(
            f"checkpoint {entry.name!r}: weights do not match the architecture in its "
            f"metadata ({entry.meta['arch']}): {exc}"
        ) from exc
    check_consistent(entry.name, model, entry.meta)
    model.to(device).eval()
    return LoadedModel(entry.name, model, entry.meta)
