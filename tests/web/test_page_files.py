"""The page's files and the small ARA-picture endpoint, without a browser (always run)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from aex_service_testing import TINY_CLASSES, make_model, make_settings
from fastapi.testclient import TestClient
from PIL import Image

from aex.service.app import create_app
from aex.service.routers.web import STATIC_DIR


@pytest.fixture
def client(redis_url: str, model_dir: Path) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(redis_url, model_dir))) as client:
        yield client


def test_index_is_the_page_with_a_strict_policy(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "connect-src 'self'" in policy
    assert "<main" in response.text and 'lang="en"' in response.text
    assert "/" not in client.get("/openapi.json").json()["paths"]


def test_every_referenced_file_is_served(client: TestClient) -> None:
    html = client.get("/").text
    assets = set(re.findall(r'(?:src|href)="(/static/[^"]+)"', html))
    assert {"/static/app.css", "/static/app.js"} <= assets
    for js in STATIC_DIR.glob("*.js"):
        for module in re.findall(r'from "\./([^"]+)"', js.read_text()):
            assets.add(f"/static/{module}")
    for path in sorted(assets):
        response = client.get(path)
        assert response.status_code == 200, path
        kind = "javascript" if path.endswith(".js") else "css"
        assert kind in response.headers["content-type"], path


def test_the_page_uses_only_the_public_api() -> None:
    """Every absolute path in the scripts is under /v1 (or the API's own /docs)."""
    for js in STATIC_DIR.glob("*.js"):
        for literal in re.findall(r'[`"](/[A-Za-z][A-Za-z0-9_./{}$-]*)', js.read_text()):
            assert literal.startswith(("/v1/", "/static/", "/docs")), (js.name, literal)
        assert not re.search(r"https?://", js.read_text()), js.name  # nothing off this origin


def test_ara_picture_endpoint(redis_url: str, tmp_path: Path) -> None:
    make_model(tmp_path, "m", TINY_CLASSES, [4, 8, 8])
    with TestClient(create_app(make_settings(redis_url, tmp_path))) as client:
        missing = client.get("/v1/models/m/ara.png")
        assert missing.status_code == 404
        assert "model 'm' has no ARA curve picture" in missing.json()["detail"]
        assert "aex evaluate m" in missing.json()["detail"]
        assert client.get("/v1/models/nope/ara.png").status_code == 404
        Image.new("RGB", (8, 4), "white").save(tmp_path / "m.ara.png")
        found = client.get("/v1/models/m/ara.png")
        assert found.status_code == 200 and found.headers["content-type"] == "image/png"
        assert found.content.startswith(b"\x89PNG")
    keyed = make_settings(redis_url, tmp_path, api_keys=["k"])
    with TestClient(create_app(keyed)) as client:
        assert client.get("/v1/models/m/ara.png").status_code == 401
        assert client.get("/").status_code == 200  # the page itself holds no data


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_api_reference_pages_need_no_cdn(client: TestClient, page: str) -> None:
    html = client.get(page).text
    assert "cdn" not in html.lower() and "https://" not in html
    assets = re.findall(r"""(?:src|href)=["']?(/docs-assets/[^"' >]+)""", html)
    assert len(assets) >= 2, html
    for asset in assets:
        response = client.get(asset)
        assert response.status_code == 200 and len(response.content) > 1000, asset
    assert client.get("/openapi.json").status_code == 200
