"""The worker's model cache: each checkpoint loaded once, least recently used evicted."""

from __future__ import annotations

import logging
from collections import OrderedDict

import torch

from aex.contract.settings import Settings
from aex.models import LoadedModel, ModelNotFoundError, ModelStore, load_checkpoint
from aex.models.store import CheckpointEntry

from .fetch import fetch_checkpoint

logger = logging.getLogger(__name__)


def resolve_device(setting: str) -> torch.device:
    """``auto`` → CUDA when present, else CPU; anything else as given."""
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(setting)


class ModelCache:
    """Loaded models keyed by (name, sha256), at most ``settings.model_cache_size``.

    A checkpoint missing from the local registry (or present in another version) is
    fetched from ``settings.api_url`` and verified before loading.
    """

    def __init__(self, settings: Settings, store: ModelStore | None = None) -> None:
        self.settings = settings
        self.store = store or (ModelStore(settings.model_dir) if settings.model_dir
                               else ModelStore())
        self.device = resolve_device(settings.device)
        self.capacity = settings.model_cache_size
        self._models: OrderedDict[tuple[str, str], LoadedModel] = OrderedDict()

    def __len__(self) -> int:
        return len(self._models)

    def _local(self, name: str, sha256: str) -> CheckpointEntry:
        try:
            entry = self.store.get(name)
        except ModelNotFoundError:
            entry = None
        if entry is not None and entry.sha256 == sha256:
            return entry
        if not self.settings.api_url:
            have = f"a different version ({entry.sha256[:12]})" if entry else "no copy"
            raise LookupError(
                f"model {name!r} (sha256 {sha256[:12]}): this worker has {have} in "
                f"{self.store.root} and AEX_API_URL is not set to fetch it"
            )
        return fetch_checkpoint(self.settings.api_url, name, sha256, self.store,
                                api_key=self.settings.api_key)

    def get(self, name: str, sha256: str) -> LoadedModel:
        """The loaded model ``name`` whose weights hash to ``sha256``."""
        key = (name, sha256)
        if key in self._models:
            self._models.move_to_end(key)
            return self._models[key]
        entry = self._local(name, sha256)
        loaded = load_checkpoint(entry.meta_path, device=self.device)
        logger.info("loaded model %s on %s", name, self.device)
        self._models[key] = loaded
        while len(self._models) > self.capacity:
            (old, _), _ = self._models.popitem(last=False)
            logger.info("evicted model %s from the cache", old)
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
        return loaded
