"""The demo page and widget files over HTTP (Flask test client; the browser tests are separate)."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

import pytest
from flask.testing import FlaskClient

from serving.http.web import STATIC_DIR


class _Tags(HTMLParser):
    """Every start tag of a document with its attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.inline_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        if self.tags and self.tags[-1][0] == "script" and data.strip():
            self.inline_script = True


def test_demo_page_is_html_with_a_strict_csp(client: FlaskClient) -> None:
    with client.get("/") as response:
        csp = response.headers["Content-Security-Policy"]
        assert response.status_code == 200
        assert response.mimetype == "text/html"
    assert "script-src 'self'" in csp
    assert "style-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert "unsafe-eval" not in csp


def test_demo_page_has_no_inline_script_or_style(client: FlaskClient) -> None:
    parser = _Tags()
    with client.get("/") as response:
        parser.feed(response.get_data(as_text=True))

    scripts = [attrs for tag, attrs in parser.tags if tag == "script"]
    assert scripts, "the page loads its script"
    assert all(attrs.get("src") and attrs.get("type") == "module" for attrs in scripts)
    assert not parser.inline_script
    assert not [tag for tag, _ in parser.tags if tag == "style"]
    assert not [tag for tag, attrs in parser.tags if "style" in attrs or any(name.startswith("on") for name in attrs)]


@pytest.mark.parametrize(
    ("path", "mimetype"),
    [
        ("/static/widget.js", "text/javascript"),
        ("/static/widget.css", "text/css"),
        ("/static/demo.js", "text/javascript"),
        ("/static/demo.css", "text/css"),
        ("/static/favicon.svg", "image/svg+xml"),
    ],
    ids=["widget-js", "widget-css", "demo-js", "demo-css", "favicon"],
)
def test_static_files_are_served_to_any_origin(make_app: Any, path: str, mimetype: str) -> None:
    # Even with a named CORS_ORIGINS the widget's files load anywhere, so that a refused
    # page can still show its visitor why the model cannot be used.
    client = make_app(cors_origins=("https://shop.example",)).test_client()

    with client.get(path, headers={"Origin": "https://elsewhere.example"}) as response:
        pass

    assert response.status_code == 200
    assert response.mimetype == mimetype
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "max-age=" in response.headers["Cache-Control"]
    assert response.headers["ETag"]


def test_static_files_answer_conditional_requests(client: FlaskClient) -> None:
    with client.get("/static/widget.js") as first:
        etag = first.headers["ETag"]

    with client.get("/static/widget.js", headers={"If-None-Match": etag}) as response:
        pass

    assert response.status_code == 304


def test_head_on_a_static_file(client: FlaskClient) -> None:
    with client.head("/static/widget.js") as response:
        pass

    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == "*"


@pytest.mark.parametrize(
    "path",
    [
        "/static/missing.js",
        "/static/../serving/app.py",
        "/static/%2e%2e/serving/app.py",
        "/static/",
        "/static/..%2fmain.py",
    ],
    ids=["missing", "dot-dot", "encoded-dot-dot", "directory", "encoded-slash"],
)
def test_missing_or_escaping_static_paths_are_json_404(client: FlaskClient, path: str) -> None:
    response = client.get(path)

    assert response.status_code == 404
    assert response.is_json
    assert response.get_json()["message"] in {"No such file under /static/", "Not found: no such route"}


def test_api_cors_still_follows_cors_origins(make_app: Any) -> None:
    client = make_app(cors_origins=("https://shop.example",)).test_client()

    refused = client.get("/v1/models/XXXModel", headers={"Origin": "https://elsewhere.example"})
    allowed = client.get("/v1/models/XXXModel", headers={"Origin": "https://shop.example"})

    assert "Access-Control-Allow-Origin" not in refused.headers
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://shop.example"


@pytest.mark.parametrize("name", sorted(path.name for path in STATIC_DIR.glob("*.js")))
def test_scripts_build_no_html_from_strings(name: str) -> None:
    # Results and schemas come from the network; they must reach the page as text only,
    # and a strict CSP (no eval) must not break the widget.
    source = (STATIC_DIR / name).read_text()
    forbidden = [
        r"\.innerHTML\b",
        r"\.outerHTML\b",
        r"insertAdjacentHTML",
        r"document\.write",
        r"\beval\(",
        r"new Function\(",
    ]
    found = [pattern for pattern in forbidden if re.search(pattern, source)]
    assert not found
    assert not re.search(r"setAttribute\(\s*[\"'](style|on\w+)[\"']", source)
