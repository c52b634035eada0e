"""Fetch a checkpoint a worker lacks from the API and verify its sha256 (no torch)."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from urllib.parse import quote

import httpx

from aex.models.store import CheckpointEntry, ModelStore, validate_name

logger = logging.getLogger(__name__)

CHUNK = 1 << 20


class ChecksumError(ValueError):
    """A downloaded checkpoint does not match the expected sha256."""


def fetch_checkpoint(
    api_url: str,
    name: str,
    sha256: str,
    store: ModelStore,
    *,
    api_key: str | None = None,
    timeout: float = 60.0,
) -> CheckpointEntry:
    """Download checkpoint ``name`` from the API at ``api_url`` into ``store.root``.

    The weights stream to a temporary file while being hashed; only when the hash
    equals ``sha256`` (and the API's ETag) do they replace any older copy, and the
    metadata sidecar is written after them.

    Raises:
        ChecksumError: the metadata or the bytes do not match ``sha256``.
        httpx.HTTPError: the API could not be reached or refused.
    """
    validate_name(name)
    headers = {"X-API-Key": api_key} if api_key else {}
    with httpx.Client(base_url=api_url.rstrip("/"), headers=headers, timeout=timeout) as client:
        response = client.get(f"/v1/models/{quote(name, safe='')}")
        response.raise_for_status()
        meta = dict(response.json()["metadata"])
        if meta.get("sha256") != sha256:
            raise ChecksumError(
                f"the API at {api_url} serves model {name!r} with sha256 "
                f"{meta.get('sha256')}, not the {sha256} this job asks for"
            )
        store.root.mkdir(parents=True, exist_ok=True)
        weights = store.root / f"{name}.safetensors"
        partial = store.root / f".{name}.safetensors.{os.getpid()}.part"
        digest = hashlib.sha256()
        try:
            with client.stream("GET", f"/v1/models/{quote(name, safe='')}/checkpoint") as stream:
                stream.raise_for_status()
                etag = stream.headers.get("etag", "").strip('"')
                with open(partial, "wb") as fh:
                    for block in stream.iter_bytes(CHUNK):
                        digest.update(block)
                        fh.write(block)
            if digest.hexdigest() != sha256 or (etag and etag != sha256):
                raise ChecksumError(
                    f"checkpoint {name!r} from {api_url}: downloaded sha256 "
                    f"{digest.hexdigest()} does not match {sha256}"
                )
            os.replace(partial, weights)
        finally:
            Path(partial).unlink(missing_ok=True)
    meta["weights"] = weights.name
    store.write_meta(name, meta)
    logger.info("fetched checkpoint %s (%s) from %s", name, sha256[:12], api_url)
    return store.get(name)
