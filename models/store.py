"""The model registry directory: listing, metadata and file lookup, without torch.

A checkpoint is two files side by side: ``<name>.safetensors`` (weights only; cannot
execute code) and ``<name>.json`` (everything needed to rebuild and use the network).
The HTTP front end uses this module to list and stream checkpoints, so it must not
import torch.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

FORMAT = "aex-checkpoint/1"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
DEFAULT_ALIAS = "default"
BUNDLED_DIR = Path(__file__).resolve().parent / "default"
ARA_PLOT_SUFFIX = ".ara.png"  # the ARA curves of <name> are drawn into <name>.ara.png


class ModelNotFoundError(LookupError):
    """No checkpoint with that name or alias in the registry."""

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(f"unknown model {name!r}; known models: {', '.join(known) or 'none'}")
        self.name = name


def default_model_dir() -> Path:
    """``$AEX_MODEL_DIR``, else ``$XDG_DATA_HOME/aex/models`` (``~/.local/share/aex/models``)."""
    if os.environ.get("AEX_MODEL_DIR"):
        return Path(os.environ["AEX_MODEL_DIR"]).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "aex" / "models"


def validate_name(name: str) -> str:
    """Return ``name`` if it is a valid checkpoint name, else raise ``ValueError``."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name) or name.endswith(".json"):
        raise ValueError(
            f"invalid model name {name!r}: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class CheckpointEntry:
    """One registered checkpoint: its name, files and metadata."""

    name: str
    meta_path: Path
    weights_path: Path
    meta: dict[str, Any]
    bundled: bool

    @property
    def aliases(self) -> list[str]:
        return list(self.meta.get("aliases", []))

    @property
    def sha256(self) -> str:
        return str(self.meta["sha256"])

    @property
    def ara_plot_path(self) -> Path:
        """Where ``aex evaluate --save-metrics`` draws this model's ARA curves."""
        return self.meta_path.with_name(f"{self.name}{ARA_PLOT_SUFFIX}")

    def summary(self) -> dict[str, Any]:
        """``{"name", "aliases", "metrics", ...}`` for listings."""
        return {
            "name": self.name,
            "aliases": self.aliases,
            "arch": self.meta.get("arch"),
            "classes": self.meta.get("classes", []),
            "input_size": self.meta.get("input_size"),
            "metrics": self.meta.get("metrics", {}),
            "bundled": self.bundled,
        }


def read_meta(path: Path) -> dict[str, Any]:
    """Read and check a metadata sidecar; ``ValueError`` when it is not one of ours."""
    try:
        meta = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read checkpoint metadata {path}: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not an aex checkpoint sidecar (format {FORMAT!r})")
    for key in ("arch", "arch_kwargs", "classes", "sha256", "weights"):
        if key not in meta:
            raise ValueError(f"checkpoint metadata {path} lacks {key!r}")
    return meta


class ModelStore:
    """A registry directory plus the bundled default model.

    Names are looked up in the directory's listing, never joined into a path, so a
    client-supplied name cannot reach a file outside the registry.
    """

    def __init__(self, root: Path | str | None = None, include_bundled: bool = True) -> None:
        self.root = Path(root) if root is not None else default_model_dir()
        self.include_bundled = include_bundled

    def _scan(self, folder: Path, bundled: bool) -> dict[str, CheckpointEntry]:
        entries: dict[str, CheckpointEntry] = {}
        if not folder.is_dir():
            return entries
        for meta_path in sorted(folder.glob("*.json")):
            name = meta_path.stem
            if not NAME_PATTERN.fullmatch(name):
                continue
            try:
                meta = read_meta(meta_path)
            except ValueError:
                continue
            weights = folder / Path(str(meta["weights"])).name
            if weights.is_file():
                entries[name] = CheckpointEntry(name, meta_path, weights, meta, bundled)
        return entries

    def entries(self) -> dict[str, CheckpointEntry]:
        """All checkpoints by name; the registry directory wins over the bundled ones.

        Each entry keeps only the aliases that resolve to it: an alias that is another
        checkpoint's name, or that a registry checkpoint shares with a bundled one (the
        registry's wins; else the first name), is dropped from the others.
        """
        found = self._scan(BUNDLED_DIR, True) if self.include_bundled else {}
        found.update(self._scan(self.root, False))
        owner: dict[str, str] = {}
        for entry in sorted(found.values(), key=lambda e: (e.bundled, e.name)):
            for alias in entry.aliases:
                if alias not in found:
                    owner.setdefault(alias, entry.name)
        for name, entry in found.items():
            kept = [a for a in entry.aliases if owner.get(a) == name]
            if kept != entry.aliases:
                found[name] = replace(entry, meta={**entry.meta, "aliases": kept})
        return found

    def list(self) -> list[CheckpointEntry]:
        """Registered checkpoints, sorted by name."""
        return [e for _, e in sorted(self.entries().items())]

    def get(self, name: str) -> CheckpointEntry:
        """Look a checkpoint up by name or alias (``ModelNotFoundError`` when absent).

        An alias set in the registry directory wins over one of a bundled checkpoint.
        """
        entries = self.entries()
        if name in entries:
            return entries[name]
        for entry in entries.values():
            if name in entry.aliases:
                return entry
        raise ModelNotFoundError(name, sorted(entries))

    def write_meta(self, name: str, meta: dict[str, Any]) -> Path:
        """Atomically write ``<name>.json`` into the registry directory."""
        validate_name(name)
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / f"{name}.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, path)
        return path
