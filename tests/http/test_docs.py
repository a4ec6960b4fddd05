"""GET /docs: Swagger UI from vendored, pinned assets; nothing loaded from another host."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from serving.http.docs import CONTENT_SECURITY_POLICY, SWAGGER_UI_DIR, SWAGGER_UI_VERSION
from tests.browsers import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, require_chromium
from tests.servers import ServerProcess


def _page_assets(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"]+)"', html)


def test_page_is_html_with_a_strict_content_security_policy(lazy_client: FlaskClient) -> None:
    response = lazy_client.get("/docs")

    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert "default-src 'none'" in CONTENT_SECURITY_POLICY
    assert "script-src 'self';" in CONTENT_SECURITY_POLICY  # no inline or remote scripts
    html = response.get_data(as_text=True)
    assert 'data-openapi-url="/openapi.json"' in html
    assert "<script>" not in html  # the initializer is a file, allowed by script-src 'self'


def test_page_refers_only_to_local_assets_that_load(lazy_client: FlaskClient) -> None:
    html = lazy_client.get("/docs").get_data(as_text=True)
    assets = _page_assets(html)

    assert sorted(assets) == [
        "/docs/assets/docs.js",
        "/docs/assets/favicon-32x32.png",
        "/docs/assets/swagger-ui-bundle.js",
        "/docs/assets/swagger-ui.css",
    ]
    expected_types = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}
    for asset in assets:
        with lazy_client.get(asset) as response:
            assert response.status_code == 200, asset
            assert response.mimetype == expected_types[Path(asset).suffix], asset
            assert "max-age=86400" in response.headers["Cache-Control"]
            assert len(response.get_data()) > 0


def test_initializer_turns_off_the_remote_validator_badge(lazy_client: FlaskClient) -> None:
    with lazy_client.get("/docs/assets/docs.js") as response:
        script = response.get_data(as_text=True)

    assert "validatorUrl: null" in script
    assert "https://" not in script
    assert "http://" not in script


@pytest.mark.parametrize(
    "path",
    [
        "/docs/assets/nope.js",
        "/docs/assets/../docs.py",
        "/docs/assets/%2e%2e/docs.py",
        "/docs/assets/..%2f..%2fsettings.py",
        "/docs/assets//etc/passwd",
    ],
)
def test_unknown_or_escaping_asset_paths_are_json_404s(lazy_client: FlaskClient, path: str) -> None:
    response = lazy_client.get(path)

    assert response.status_code == 404
    assert response.get_json()["code"] == "not_found"


def test_vendored_assets_match_their_recorded_checksums() -> None:
    sums = (SWAGGER_UI_DIR / "SHA256SUMS").read_text().splitlines()
    recorded = dict(reversed(line.split(maxsplit=1)) for line in sums)

    assert {"swagger-ui-bundle.js", "swagger-ui.css", "LICENSE", "NOTICE"} <= set(recorded)
    assert set(recorded) == {p.name for p in SWAGGER_UI_DIR.iterdir()} - {"SHA256SUMS"}
    for name, digest in recorded.items():
        assert hashlib.sha256((SWAGGER_UI_DIR / name).read_bytes()).hexdigest() == digest, name


def test_vendored_version_is_the_pinned_one_and_apache_licensed() -> None:
    package = json.loads((SWAGGER_UI_DIR / "package.json").read_text())

    assert (package["name"], package["version"], package["license"]) == (
        "swagger-ui-dist",
        SWAGGER_UI_VERSION,
        "Apache-2.0",
    )
    assert "Apache License" in (SWAGGER_UI_DIR / "LICENSE").read_text()


def _chromium(*args: str, url: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    command = [
        str(CHROMIUM),
        "--headless",
        *CHROMIUM_ARGS,
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--virtual-time-budget=15000",
        *args,
        url,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)


@pytest.mark.e2e
def test_docs_render_in_a_real_browser(lazy_gunicorn: ServerProcess, tmp_path: Path) -> None:
    require_chromium()
    url = lazy_gunicorn.url + "/docs"

    dom = _chromium("--dump-dom", url=url, tmp_path=tmp_path).stdout
    ARTIFACTS.mkdir(exist_ok=True)
    _chromium("--window-size=1280,1400", f"--screenshot={ARTIFACTS / 'docs.png'}", url=url, tmp_path=tmp_path)

    # Swagger UI ran (under the page's CSP) and rendered an operation per route.
    assert 'data-path="/v1/XXXModel"' in dom
    assert 'data-path="/v1/models/XXXModel:predict"' in dom
    assert "opblock-tag" in dom
    assert (ARTIFACTS / "docs.png").stat().st_size > 10_000
    log = lazy_gunicorn.log()
    # The browser fetched the document (each log line is one JSON object).
    entries = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert any(
        (e.get("path") == "/openapi.json" and e.get("status") == 200)
        or (
            e.get("httpRequest", {}).get("requestUrl", "").endswith("/openapi.json")
            and e.get("httpRequest", {}).get("status") == 200
        )
        for e in entries
    )
