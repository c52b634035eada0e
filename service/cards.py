"""Model cards: what a model is, how it was trained, what it measured, what it cannot do,
and the licence of its weights.

The words that cannot be derived (description, licence, data, hardware, extra limits)
come from the ``card`` object of the model's JSON sidecar; everything else comes from
the rest of the metadata (``training.command``, ``training.train_seconds``, ``metrics``
with ``ara_settings`` and ``ara_images``, and ``explainers`` from ``aex
benchmark-explainers --save-metrics``). The limits every model shares (its input size
and what an upload of another size becomes, its classes, its measured error rate) are
written from the metadata too, so a model without a card still gets an honest one.
"""

from __future__ import annotations

from typing import Any

from aex.models.store import CheckpointEntry

NOT_RECORDED = "not recorded in the model's metadata"
LISTED_CLASSES = 12  # a limit names the classes when there are at most this many


def _text(card: dict[str, Any], key: str) -> str | None:
    value = card.get(key)
    return value.strip() if isinstance(value, str) and value.strip() else None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _count(value: Any) -> int | None:
    number = _number(value)
    return int(number) if number is not None and number == int(number) else None


def _description(meta: dict[str, Any]) -> str:
    """One sentence from the architecture and training options."""
    kwargs, training = meta.get("arch_kwargs", {}), meta.get("training", {})
    height, width = meta.get("input_size") or ["?", "?"]
    act = {"hhrelu": "half-Huber ReLU", "relu": "ReLU"}.get(str(kwargs.get("act")))
    parts = [f"A {meta.get('arch', 'network')}" + (f" with {act} activations" if act else ""),
             f"for {len(meta.get('classes', []))} classes at {height}×{width} pixels"]
    how = []
    if training.get("robust"):
        how.append("robust training (the input-gradient penalty)")
    if training.get("adversarial"):
        how.append(f"adversarial training ({training['adversarial']})")
    if how:
        parts.append("trained with " + " and ".join(how))
    elif "epochs" in training:
        parts.append("standard training (no robust additions, no adversarial training)")
    return ", ".join(parts) + "."


def _limits(meta: dict[str, Any]) -> list[str]:
    """What every model's metadata says it cannot do."""
    classes = [str(c) for c in meta.get("classes", [])]
    height, width = meta.get("input_size") or ["?", "?"]
    named = f" ({', '.join(classes)})" if len(classes) <= LISTED_CLASSES else ""
    limits = [
        f"It knows only its {len(classes)} classes{named}: whatever a picture shows, the "
        "answer is one of them.",
        f"It sees {height}×{width} pixels: an upload of any other size is resized to "
        f"{height}×{width} as a whole (bicubic, the aspect ratio is not kept, transparency "
        "is laid over white), so a larger photo loses its detail and a photo that is not "
        "square is squeezed.",
    ]
    metrics = meta.get("metrics", {})
    accuracy, tested = _number(metrics.get("accuracy")), _count(metrics.get("n_test"))
    if accuracy is not None:
        on = f"the {tested:,} test images" if tested else "the test images"
        limits.append(f"It answers wrongly on {100 * (1 - accuracy):.0f} % of {on} it was "
                      "measured on.")
    return limits


def model_card(entry: CheckpointEntry) -> dict[str, Any]:
    """The card of a registered model (``aex.service.schemas.ModelCard`` as data)."""
    meta = entry.meta
    recorded = meta.get("card")
    card: dict[str, Any] = recorded if isinstance(recorded, dict) else {}
    training = meta.get("training", {})
    metrics = meta.get("metrics", {})
    listed = card.get("limits")
    extra = [x for x in listed if isinstance(x, str)] if isinstance(listed, list) else []
    settings = metrics.get("ara_settings")
    trained = _count(training.get("train_images"))
    return {
        "description": _text(card, "description") or _description(meta),
        "licence": _text(card, "licence") or NOT_RECORDED,
        "training": {
            "command": training.get("command") if isinstance(training.get("command"), str)
            else None,
            "data": _text(card, "data") or (f"{trained:,} training images" if trained else None),
            "hardware": _text(card, "hardware"),
            "seconds": _number(training.get("train_seconds")),
            "epochs": _count(training.get("epochs_done", training.get("epochs"))),
            "images": trained,
        },
        "quality": {
            "accuracy": _number(metrics.get("accuracy")),
            "accuracy_images": _count(metrics.get("n_test")),
            "ara_attack": _number(metrics.get("ara_attack")),
            "ara_btr": _number(metrics.get("ara_btr")),
            "ara_images": _count(metrics.get("ara_images")),
            "ara_settings": settings if isinstance(settings, dict) else None,
            "curves_url": (f"/v1/models/{entry.name}/ara.png"
                           if entry.ara_plot_path.is_file() else None),
            "explainers": (metrics["explainers"]
                           if isinstance(metrics.get("explainers"), dict) else None),
        },
        "limits": [*_limits(meta), *extra],
    }
