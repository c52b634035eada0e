"""The worker's model cache and its checkpoint fetch from a real API over HTTP."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from aex_service_testing import TINY_CLASSES, make_model, service_env, start_api

from aex.contract.settings import Settings
from aex.models import ModelStore
from aex.worker.cache import ModelCache, resolve_device
from aex.worker.fetch import ChecksumError, fetch_checkpoint


@pytest.fixture(scope="module")
def api_url(redis_url: str, model_dir: Path,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    proc, url = start_api(service_env(redis_url, model_dir),
                          tmp_path_factory.mktemp("logs") / "api.log")
    yield url
    proc.stop()


def test_fetch_verifies_and_registers(api_url: str, model_dir: Path, tmp_path: Path) -> None:
    sha = ModelStore(model_dir).get("tiny").sha256
    store = ModelStore(tmp_path, include_bundled=False)
    entry = fetch_checkpoint(api_url, "tiny", sha, store)
    assert entry.name == "tiny" and entry.sha256 == sha
    assert hashlib.sha256(entry.weights_path.read_bytes()).hexdigest() == sha
    assert entry.meta["classes"] == TINY_CLASSES
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.json", "tiny.safetensors"]


def test_fetch_refuses_another_version(api_url: str, tmp_path: Path) -> None:
    store = ModelStore(tmp_path, include_bundled=False)
    with pytest.raises(ChecksumError, match="not the"):
        fetch_checkpoint(api_url, "tiny", "0" * 64, store)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(httpx.HTTPStatusError):
        fetch_checkpoint(api_url, "nope", "0" * 64, store)


def test_cache_fetches_what_it_lacks_and_evicts(api_url: str, model_dir: Path,
                                                tmp_path: Path) -> None:
    source = ModelStore(model_dir)
    settings = Settings(_env_file=None, model_dir=tmp_path, api_url=api_url, device="cpu",
                        model_cache_size=1)
    cache = ModelCache(settings, store=ModelStore(tmp_path, include_bundled=False))
    tiny = cache.get("tiny", source.get("tiny").sha256)
    assert tiny.classes == TINY_CLASSES and cache.get("tiny", source.get("tiny").sha256) is tiny
    cache.get("slow", source.get("slow").sha256)
    assert len(cache) == 1
    assert cache.get("tiny", source.get("tiny").sha256) is not tiny  # evicted, reloaded


def test_cache_without_api_names_the_missing_model(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, model_dir=tmp_path, api_url=None, device="cpu")
    cache = ModelCache(settings, store=ModelStore(tmp_path, include_bundled=False))
    with pytest.raises(LookupError, match="'ghost'.*AEX_API_URL"):
        cache.get("ghost", "0" * 64)


def test_cache_refetches_a_changed_checkpoint(api_url: str, model_dir: Path,
                                              tmp_path: Path) -> None:
    make_model(tmp_path, "tiny", TINY_CLASSES, [4, 4, 4])  # same name, other weights
    local = ModelStore(tmp_path, include_bundled=False)
    wanted = ModelStore(model_dir).get("tiny").sha256
    assert local.get("tiny").sha256 != wanted
    settings = Settings(_env_file=None, model_dir=tmp_path, api_url=api_url, device="cpu")
    ModelCache(settings, store=local).get("tiny", wanted)
    assert local.get("tiny").sha256 == wanted


def test_device_setting() -> None:
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(ValueError, match="device"):
        Settings(_env_file=None, device="tpu")
