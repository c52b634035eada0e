"""Explanation targets: the one parser and resolver of what ``targets`` may say.

A target list is a word (``all``, ``predicted``, ``true``, ``second``) or class names
and indices: comma-separated (``cat,dog,3``) or a flat JSON list (``["cat", 3]``).
Indices are ASCII digits only; a JSON list must be flat. The API, the worker, the
command line and the science (``AdversarialExplainer``) all go through this module.

Words, for one image with softmax probabilities ``p`` and an optional true label:

- ``all``: every class;
- ``predicted``: the most probable class;
- ``true``: the label when one is given, else the most probable class (an upload
  has no label);
- ``second``: the most probable class other than the label when one is given, else
  other than the most probable class (the reference's "most confident wrong class").
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Literal, TypeAlias, get_args

from .errors import InvalidJobError, UnknownClassError

TargetWord: TypeAlias = Literal["all", "predicted", "true", "second"]
TARGET_WORDS: tuple[str, ...] = get_args(TargetWord)
Targets: TypeAlias = TargetWord | list[int]
"""Resolved targets: a word, or class indices (distinct, in the order given)."""

_INDEX = re.compile(r"[0-9]{1,9}")


def _flat_json_list(text: str) -> list[object]:
    """``text`` as a JSON list that holds no list or object (nesting refused unparsed)."""
    depth, in_string, escaped = 0, False, False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > 1:
                raise InvalidJobError(
                    "targets must be a flat JSON list of class names or indices (no nesting)"
                )
        elif char in "]}":
            depth -= 1
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidJobError(f"targets is not a valid JSON list: {exc}") from exc
    if not isinstance(items, list):
        raise InvalidJobError("targets must be a JSON list of class names or indices")
    return items


def parse_targets(text: str, max_targets: int) -> TargetWord | list[str | int]:
    """Parse the ``targets`` text: a word, or at most ``max_targets`` names and indices.

    Indices come back as ``int`` (written with ASCII digits), names as stripped ``str``;
    nothing is checked against a model yet (:func:`resolve_targets` does that).
    Raises :class:`InvalidJobError` saying what to fix.
    """
    stripped = text.strip()
    word = stripped.lower()
    if word in TARGET_WORDS:
        return word  # type: ignore[return-value]
    raw: list[object]
    if stripped.startswith("["):
        raw = _flat_json_list(stripped)
    else:
        raw = [item.strip() for item in stripped.split(",") if item.strip()]
    if not raw:
        raise InvalidJobError(
            f"targets is empty: use {', '.join(TARGET_WORDS)} or a list of classes"
        )
    if len(raw) > max_targets:
        raise InvalidJobError(f"{len(raw)} targets; at most {max_targets} are allowed")
    items: list[str | int] = []
    for item in raw:
        if isinstance(item, bool) or not isinstance(item, str | int):
            raise InvalidJobError(f"a target must be a class name or index, not {item!r}")
        if isinstance(item, str):
            item = item.strip()
            if _INDEX.fullmatch(item):
                item = int(item)
        items.append(item)
    return items


def class_index(token: str | int, classes: Sequence[str]) -> int:
    """The index of a class given by name or index.

    Raises :class:`UnknownClassError` naming the classes when the model lacks it, and
    :class:`InvalidJobError` for anything but a name or a non-negative index.
    """
    if isinstance(token, bool) or not isinstance(token, str | int):
        raise InvalidJobError(f"a class must be a name or an index, not {token!r}")
    if isinstance(token, str) and _INDEX.fullmatch(token.strip()):
        token = int(token.strip())
    if isinstance(token, int):
        if not 0 <= token < len(classes):
            raise UnknownClassError(
                f"unknown class index {token}: the model has {len(classes)} classes "
                f"(0-{len(classes) - 1})"
            )
        return token
    name = token.strip()
    if name not in classes:
        raise UnknownClassError(f"unknown class {name!r}: the model knows {', '.join(classes)}")
    return list(classes).index(name)


def resolve_targets(targets: str | int | Sequence[str | int], classes: Sequence[str],
                    max_targets: int | None = None) -> Targets:
    """Targets checked against a model's ``classes``: a word, or distinct class indices.

    ``targets`` is a word, one class, or a sequence of classes (names or indices);
    a string that is not a word is parsed with :func:`parse_targets`. ``all`` is
    refused when the model has more than ``max_targets`` classes.
    """
    if isinstance(targets, str):
        targets = parse_targets(targets, max_targets or max(1, len(classes)))
    if isinstance(targets, str):
        if targets == "all" and max_targets is not None and len(classes) > max_targets:
            raise InvalidJobError(
                f"the model has {len(classes)} classes, more than the {max_targets} targets "
                "allowed; list the targets"
            )
        return targets  # type: ignore[return-value]
    items = [targets] if isinstance(targets, int) else list(targets)
    if not items:
        raise InvalidJobError(
            f"targets is empty: use {', '.join(TARGET_WORDS)} or a list of classes"
        )
    if max_targets is not None and len(items) > max_targets:
        raise InvalidJobError(f"{len(items)} targets; at most {max_targets} are allowed")
    return list(dict.fromkeys(class_index(item, classes) for item in items))


def choose_targets(targets: Targets, probabilities: Sequence[float],
                   label: int | None = None) -> list[int]:
    """The class indices that ``targets`` names for one image (see the module docstring).

    ``probabilities`` are the image's softmax probabilities; ``label`` its true class,
    when known.
    """
    n = len(probabilities)
    if label is not None and not 0 <= label < n:
        raise InvalidJobError(f"label {label} is out of range 0..{n - 1}")
    order = sorted(range(n), key=lambda k: -probabilities[k])
    if targets == "all":
        return list(range(n))
    if targets == "predicted" or (targets == "true" and label is None):
        return [order[0]]
    if targets == "true":
        return [int(label)]  # type: ignore[arg-type]
    if targets == "second":
        exclude = order[0] if label is None else label
        return [next(k for k in order if k != exclude)]
    if isinstance(targets, str):
        raise InvalidJobError(f"unknown target word {targets!r}; use {', '.join(TARGET_WORDS)}")
    for index in targets:
        if not 0 <= index < n:
            raise UnknownClassError(f"target class index {index} is out of range 0..{n - 1}")
    return list(targets)
