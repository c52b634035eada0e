"""One image explained by one or more methods: its pictures, its full-precision arrays,
the colour scales its pictures share, and the record of how it was made.

Used by explanation jobs (one image, one method) and batch jobs (each image, each
method). The science lives in ``aex.models``; this module only runs and renders it.
"""

from __future__ import annotations

import hashlib
import inspect
import io
import platform
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import numpy as np
import torch

import aex
from aex.contract.jobs import MAX_SEED
from aex.contract.targets import Targets, choose_targets
from aex.models import LoadedModel

ProgressFn = Callable[[float], None]
TOP_PREDICTIONS = 10
GRID_COLUMNS = 12
ARRAYS_FILE = "arrays.safetensors"
COLORBAR = "colorbar.png"


@dataclass
class ImageExplanation:
    """What explaining one image produced; ``artifacts`` holds PNGs and ``.npy`` files by
    name, ``tensors`` the same arrays for the job's safetensors file."""

    predictions: list[dict[str, Any]]
    methods: list[dict[str, Any]]
    arrays: list[dict[str, Any]]
    scales: list[dict[str, Any]]
    settings: dict[str, dict[str, Any]]
    input_sha256: str
    artifacts: dict[str, bytes] = field(default_factory=dict)
    tensors: dict[str, np.ndarray] = field(default_factory=dict)


def resolve_seed(seed: int | None) -> int:
    """The seed a job runs with: the one it names, else a fresh random one."""
    return secrets.randbelow(MAX_SEED + 1) if seed is None else seed


def adversarial_settings(rho: float | None, steps: int | None) -> dict[str, Any]:
    """Every setting of the adversarial method: ``rho`` and ``steps`` when given, the
    science's defaults for them and for the rest."""
    from aex.models import AdversarialExplainer

    defaults = {name: p.default
                for name, p in inspect.signature(AdversarialExplainer.explain).parameters.items()
                if name in ("rho", "steps", "overshoot", "momentum", "clip")}
    given = {"rho": rho, "steps": steps}
    settings = {k: given.get(k) if given.get(k) is not None else v for k, v in defaults.items()}
    return {"mode": "encourage", **settings}


def npy_bytes(array: np.ndarray) -> bytes:
    """``array`` in NumPy's ``.npy`` format (no pickled objects)."""
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def safetensors_bytes(tensors: dict[str, np.ndarray]) -> bytes:
    """The arrays as one safetensors file."""
    from safetensors.numpy import save

    return save({name: np.ascontiguousarray(a) for name, a in tensors.items()})


def _class(classes: list[str], index: int, probability: float) -> dict[str, Any]:
    return {"class": classes[index], "index": int(index), "probability": float(probability)}


def predictions(classes: list[str], probs: torch.Tensor) -> list[dict[str, Any]]:
    """The most likely classes first, at most ``TOP_PREDICTIONS``."""
    values, indices = probs.detach().cpu().sort(descending=True)
    return [_class(classes, int(i), float(v))
            for v, i in zip(values[:TOP_PREDICTIONS], indices[:TOP_PREDICTIONS], strict=True)]


def _array(name: str, value: torch.Tensor, meaning: str,
           picture: str | None, out: ImageExplanation) -> None:
    array = value.detach().float().cpu().numpy()
    out.artifacts[name] = npy_bytes(array)
    out.tensors[name.removesuffix(".npy")] = array
    out.arrays.append({"name": name, "shape": list(array.shape), "dtype": str(array.dtype),
                       "meaning": meaning, "picture": picture})


def explain_image(loaded: LoadedModel, x: torch.Tensor, methods: Sequence[str],
                  targets: Targets, *, rho: float | None, steps: int | None, seed: int,
                  prefix: str = "", progress: ProgressFn | None = None) -> ImageExplanation:
    """Explain the model input ``x`` ``(1, C, H, W)`` with each of ``methods`` toward
    ``targets``; artifact names start with ``prefix``.

    Torch is seeded with ``seed`` before each method. The signed difference maps of all
    targets share one scale (the largest ``|δ|``), and the heat maps of all classic methods
    and targets share one (the largest attribution); ``colorbar.png`` and the grid draw them.
    """
    from aex.models import AdversarialExplainer, ClassicExplainer
    from aex.models.render import (
        DIFFERENCE_FORMULA,
        HEAT_COLORMAP,
        HEAT_FORMULA,
        change_label,
        colorbar_png,
        colorize,
        difference_png,
        grid_png,
        heatmap_png,
        image_png,
        stack_png,
    )

    classes = loaded.classes
    with torch.no_grad():
        probs = loaded.model(x).softmax(1)[0]
    input_png = image_png(x[0])
    out = ImageExplanation(predictions=predictions(classes, probs), methods=[], arrays=[],
                           scales=[], settings={},
                           input_sha256=hashlib.sha256(input_png).hexdigest())
    out.artifacts[f"{prefix}input.png"] = input_png
    rows: list[tuple[list[torch.Tensor], list[str]]] = []
    heats: list[tuple[int, str, int, torch.Tensor]] = []  # (method slot, name, class, map)
    for m, method in enumerate(methods):
        def report(fraction: float, _m: int = m) -> None:
            if progress is not None:
                progress((_m + fraction) / len(methods))

        torch.manual_seed(seed)
        if method == "adversarial":
            settings = adversarial_settings(rho, steps)
            exp = AdversarialExplainer(loaded.model, classes=classes).explain(
                x, targets=targets, progress=report,
                rho=settings["rho"], steps=settings["steps"],
                overshoot=settings["overshoot"], momentum=settings["momentum"],
                clip=settings["clip"])
            scale = max(float(exp.perturbations.abs().max()), 1e-12)
            tiles, labels, entries, pictures = [x[0]], ["input"], [], []
            for t in range(exp.target_index.numel()):
                index = int(exp.target_index[t])
                before, after = float(exp.prob_before[t]), float(exp.prob_after[t])
                name = f"{prefix}explanation_{index}.png"
                diff = f"{prefix}difference_{index}.png"
                out.artifacts[name] = image_png(exp.images[t])
                out.artifacts[diff] = difference_png(exp.perturbations[t], scale)
                pictures.append(diff)
                _array(f"{prefix}delta_{index}.npy", exp.perturbations[t],
                       "the perturbation δ toward this class, (C, H, W), in [0, 1] pixel units; "
                       "the explanation is input + δ", diff, out)
                tiles.append(exp.images[t])
                labels.append(change_label(classes[index], before, after))
                entries.append({
                    "class": classes[index], "index": index,
                    "probability_before": before, "probability_after": after,
                    "perturbation_rms": float(exp.perturbation_rms[t]),
                    "artifact": name, "difference": diff,
                    "became_target": bool(exp.became_target[t]),
                    "sanity_check": "passed" if bool(exp.sane[t]) else "failed",
                })
            rows.append((tiles, labels))
            out.scales.append({"quantity": "perturbation", "colormap": "signed",
                               "vmin": -scale, "vmax": scale, "formula": DIFFERENCE_FORMULA,
                               "pictures": pictures})
            out.methods.append({"method": method, "rho": settings["rho"],
                                "steps": settings["steps"], "targets": entries,
                                "warnings": list(exp.warnings)})
        else:
            explainer = ClassicExplainer(loaded.model, method)
            settings = explainer.settings
            indices = choose_targets(targets, probs.tolist())
            entries = []
            for n, index in enumerate(indices):
                heat = explainer.attribute(x, torch.tensor([index], device=x.device),
                                           normalise=False)[0]
                heats.append((m, method, index, heat))
                entries.append({
                    "class": classes[index], "index": index,
                    "probability_before": float(probs[index]), "probability_after": None,
                    "perturbation_rms": None, "artifact": f"{prefix}{method}_{index}.png",
                    "difference": None,
                })
                report((n + 1) / len(indices))
            out.methods.append({"method": method, "rho": None, "steps": None,
                                "targets": entries, "warnings": []})
            rows.append(([], []))
        out.settings[method] = dict(settings)
    bars = []
    if any(s["quantity"] == "perturbation" for s in out.scales):
        top = out.scales[0]["vmax"]
        bars.append(("perturbation (signed difference)", "signed", -top, top))
    if heats:
        vmax = max(max(float(h.max()) for *_, h in heats), 1e-12)
        pictures = []
        for m, method, index, heat in heats:
            name = f"{prefix}{method}_{index}.png"
            out.artifacts[name] = heatmap_png(x[0], heat, vmax=vmax)
            pictures.append(name)
            _array(f"{prefix}{method}_{index}.npy", heat,
                   f"{method} attribution toward {classes[index]}, (H, W), in the method's "
                   "own units (absolute values, the largest over channels)", name, out)
            tiles, labels = rows[m]
            if not tiles:
                tiles.append(x[0])
                labels.append(method)
            tiles.append(colorize(heat / vmax, HEAT_COLORMAP))
            labels.append(f"{classes[index]} {float(probs[index]):.2f}")
        out.scales.append({"quantity": "attribution", "colormap": HEAT_COLORMAP,
                           "vmin": 0.0, "vmax": vmax, "formula": HEAT_FORMULA,
                           "pictures": pictures})
        bars.append(("attribution (all heat maps)", HEAT_COLORMAP, 0.0, vmax))
    colorbar = colorbar_png(bars)
    out.artifacts[f"{prefix}{COLORBAR}"] = colorbar
    columns = min(GRID_COLUMNS, max(len(tiles) for tiles, _ in rows))
    grids = [grid_png(tiles, labels, columns=columns) for tiles, labels in rows]
    out.artifacts[f"{prefix}grid.png"] = stack_png(*grids, colorbar)
    return out


def versions() -> dict[str, str]:
    """The versions of what made a result."""
    found = {"aex": aex.__version__, "python": platform.python_version()}
    for package in ("torch", "captum", "numpy"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "absent"
    return found


def make_record(kind: str, spec: dict[str, Any], loaded: LoadedModel, sha256: str,
                settings: dict[str, Any], seed: int | None, inputs: list[str],
                timings: dict[str, float]) -> dict[str, Any]:
    """A :class:`~aex.contract.results.Record` as JSON data."""
    parameter = next(loaded.model.parameters())
    return {
        "kind": kind, "spec": spec, "model": loaded.name, "sha256": sha256,
        "settings": settings, "versions": versions(), "device": str(parameter.device),
        "dtype": str(parameter.dtype).removeprefix("torch."), "seed": seed,
        "inputs": inputs, "timings": {k: round(v, 4) for k, v in timings.items()},
    }


class Stopwatch:
    """Seconds per named stage."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self._start = time.perf_counter()

    def lap(self, stage: str) -> None:
        """Add the time since the last lap to ``stage``."""
        now = time.perf_counter()
        self.timings[stage] = self.timings.get(stage, 0.0) + now - self._start
        self._start = now
