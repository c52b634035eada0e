"""Webhooks: a job may name a callback URL that gets a signed POST when the job ends.

The API checks the URL against the operator's allow-list (``AEX_WEBHOOK_ALLOW``); a
worker's sender thread delivers it (``aex.worker.webhooks``), signed with HMAC-SHA256
under ``AEX_WEBHOOK_SECRET``. A receiver checks a delivery with :func:`verify`: the
signature covers ``"<timestamp>.<body>"``, so a body cannot be replayed under a new time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from urllib.parse import urlsplit

from .errors import InvalidJobError

SIGNATURE_HEADER = "X-Aex-Signature"
TIMESTAMP_HEADER = "X-Aex-Timestamp"
DELIVERY_HEADER = "X-Aex-Delivery"
EVENT = "job.ended"
MAX_URL = 2000
DEFAULT_TOLERANCE_S = 300


def _parts(url: str) -> tuple[str, str, int | None, str]:
    parsed = urlsplit(url)
    try:
        port = parsed.port
    except ValueError as exc:
        raise InvalidJobError(f"callback {url!r} has an invalid port") from exc
    return parsed.scheme.lower(), (parsed.hostname or "").lower(), port, parsed.path or "/"


def check_callback(url: str, allow: list[str]) -> str:
    """``url`` when an allow-list entry (``scheme://host[:port]/path``) admits it: same
    scheme, host and port, and a path under the entry's; :class:`InvalidJobError` else."""
    if not allow:
        raise InvalidJobError("webhooks are not enabled on this service (its operator sets "
                              "AEX_WEBHOOK_ALLOW and AEX_WEBHOOK_SECRET)")
    if len(url) > MAX_URL or any(ord(c) < 33 for c in url) or "@" in urlsplit(url).netloc:
        raise InvalidJobError("callback must be a plain http(s) URL without credentials")
    scheme, host, port, path = _parts(url)
    if scheme not in ("http", "https") or not host:
        raise InvalidJobError("callback must be an http or https URL")
    if "%2e" in path.lower() or any(part in (".", "..") for part in path.split("/")):
        raise InvalidJobError("callback's path may not hold . or .. segments")
    for entry in allow:
        e_scheme, e_host, e_port, e_path = _parts(entry)
        prefix = e_path if e_path.endswith("/") else e_path + "/"
        if (scheme, host, port) == (e_scheme, e_host, e_port) and (
                path == e_path or path.startswith(prefix)):
            return url
    raise InvalidJobError(f"callback {url!r} is not on this service's webhook allow-list")


def delivery(job_id: str, url: str, attempt: int = 0) -> str:
    """A pending delivery as it waits in Redis (:data:`aex.contract.keys.WEBHOOKS`)."""
    return json.dumps({"job": job_id, "url": url, "attempt": attempt})


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Aex-Signature`` value of a delivery: ``sha256=<hex HMAC>``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, headers: Mapping[str, str], body: bytes,
           tolerance_s: float = DEFAULT_TOLERANCE_S, now: float | None = None) -> bool:
    """Whether a delivery (its headers, looked up case-insensitively, and raw body) was
    signed with ``secret`` within ``tolerance_s`` seconds of ``now``."""
    lower = {k.lower(): v for k, v in headers.items()}
    timestamp = lower.get(TIMESTAMP_HEADER.lower(), "")
    given = lower.get(SIGNATURE_HEADER.lower(), "")
    if not timestamp.isdigit():
        return False
    if abs((time.time() if now is None else now) - int(timestamp)) > tolerance_s:
        return False
    return hmac.compare_digest(given, signature(secret, timestamp, body))
