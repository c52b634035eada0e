"""The web page at ``/``: static HTML, CSS and JavaScript that use only the public ``/v1`` API.

No build step and nothing fetched from the network: the files under ``service/static/``
are package data, served as they are. ``/`` answers the page with a Content-Security-Policy
that allows scripts, styles, images and requests from this origin only (plus ``blob:``
images, which is how the page shows pictures it fetched with an ``X-API-Key`` header).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)

router = APIRouter(tags=["web"])


@router.get("/", include_in_schema=False)
def index() -> FileResponse:
    """The page: explain an image, attack a model, read a model's metadata."""
    return FileResponse(
        STATIC_DIR / "index.html",
        media_type="text/html; charset=utf-8",
        headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY,
                 "Cache-Control": "no-cache"},
    )
