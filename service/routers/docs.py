"""``/docs`` and ``/redoc`` that work offline: their scripts and styles come from the
``fastapi-offline`` package's copies, served here, instead of a CDN."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse

ASSETS_PATH = "/docs-assets"
ASSETS_DIR = Path(str(files("fastapi_offline") / "static"))
TITLE = "aex: adversarial explanations"

router = APIRouter(include_in_schema=False)


@router.get("/docs", response_class=HTMLResponse)
def swagger_ui() -> HTMLResponse:
    """The OpenAPI reference (Swagger UI), every asset served by this API."""
    return get_swagger_ui_html(
        openapi_url="/openapi.json", title=f"{TITLE} - API reference",
        swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS_PATH}/favicon.png",
    )


@router.get("/redoc", response_class=HTMLResponse)
def redoc() -> HTMLResponse:
    """The OpenAPI reference (ReDoc), every asset served by this API."""
    return get_redoc_html(
        openapi_url="/openapi.json", title=f"{TITLE} - API reference",
        redoc_js_url=f"{ASSETS_PATH}/redoc.standalone.js",
        redoc_favicon_url=f"{ASSETS_PATH}/favicon.png", with_google_fonts=False,
    )
