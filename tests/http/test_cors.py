"""CORS for browser widgets: preflight answered, origins from CORS_ORIGINS, no credentials."""

from __future__ import annotations

from typing import Any

import flask_cors.extension
import pytest
from flask import Flask

from serving.app import create_app
from serving.config.settings import Settings
from serving.http import pipeline
from serving.http.cors import any_origin_headers
from tests.conftest import FIXTURE_HANDLERS

PREFLIGHT = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}


def test_preflight_any_origin_by_default(client: Any) -> None:
    response = client.options("/v1/XXXModel", headers={"Origin": "https://widgets.example", **PREFLIGHT})

    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert "content-type" in response.headers["Access-Control-Allow-Headers"].lower()
    assert "Access-Control-Allow-Credentials" not in response.headers


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [("https://shop.example", True), ("https://blog.example", True), ("https://evil.example", False)],
)
def test_named_origins(make_app: Any, origin: str, allowed: bool) -> None:
    client = make_app(cors_origins=("https://shop.example", "https://blog.example")).test_client()

    preflight = client.options("/v1/XXXModel", headers={"Origin": origin, **PREFLIGHT})
    actual = client.post("/v1/XXXModel", json={"name": "Leo"}, headers={"Origin": origin})

    for response in (preflight, actual):
        assert (response.headers.get("Access-Control-Allow-Origin") == origin) is allowed


def test_error_responses_carry_cors_headers(client: Any) -> None:
    response = client.post("/v1/XXXModel", json={}, headers={"Origin": "https://widgets.example"})

    assert response.status_code == 400
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "X-Request-Id" in response.headers["Access-Control-Expose-Headers"]


@pytest.mark.parametrize(
    "header", ["X-Request-Id", "X-Model-Version", "Location", "Retry-After", "Inference-Header-Content-Length"]
)
def test_a_browser_may_read_the_headers_the_api_answers_with(client: Any, header: str) -> None:
    response = client.post("/v1/XXXModel", json={"name": "Leo"}, headers={"Origin": "https://widgets.example"})

    exposed = {name.strip().lower() for name in response.headers["Access-Control-Expose-Headers"].split(",")}
    assert header.lower() in exposed


# --- with `*`, answers that are no preflight skip Flask-CORS's work, and stay its answers ---

ANY = ("*",)
NAMED = ("https://shop.example", "https://blog.example")
SHOP = {"Origin": "https://shop.example"}
# Each request as (method, path, headers, JSON body); every one also sends a fixed
# X-Request-Id, so that the two apps' answers may be compared byte for byte.
REQUESTS = [
    pytest.param("POST", "/v1/Echo", {}, {"text": "hi"}, id="post-no-origin"),
    pytest.param("POST", "/v1/Echo", SHOP, {"text": "hi"}, id="post-origin"),
    pytest.param("POST", "/v1/Echo", {"Origin": "https://evil.example"}, {"text": "hi"}, id="post-other-origin"),
    pytest.param("POST", "/v1/Echo", SHOP, {}, id="400-origin"),
    pytest.param("POST", "/v1/Echo", {}, {}, id="400-no-origin"),
    pytest.param("POST", "/v1/Crashing", SHOP, {}, id="500-origin"),
    pytest.param("GET", "/v1/models", {}, None, id="get-no-origin"),
    pytest.param("GET", "/v1/models", SHOP, None, id="get-origin"),
    pytest.param("HEAD", "/healthz", SHOP, None, id="head-origin"),
    pytest.param("GET", "/nowhere", SHOP, None, id="404-origin"),
    pytest.param("DELETE", "/v1/Echo", SHOP, None, id="405-origin"),
    pytest.param("OPTIONS", "/v1/Echo", {**SHOP, **PREFLIGHT}, None, id="preflight"),
    pytest.param(
        "OPTIONS", "/v1/Echo", {**SHOP, "Access-Control-Request-Method": "PUT"}, None, id="preflight-bad-method"
    ),
    pytest.param("OPTIONS", "/v1/Echo", SHOP, None, id="options-origin"),
    pytest.param("OPTIONS", "/v1/Echo", {}, None, id="options-no-origin"),
    pytest.param(
        "POST",
        "/v1/Echo",
        {**SHOP, "Access-Control-Request-Private-Network": "true"},
        {"text": "hi"},
        id="post-private-network",
    ),
    pytest.param(
        "OPTIONS",
        "/v1/Echo",
        {**SHOP, **PREFLIGHT, "Access-Control-Request-Private-Network": "true"},
        None,
        id="preflight-private-network",
    ),
    pytest.param("GET", "/static/widget.js", SHOP, None, id="view-sets-its-own-allow-origin"),
]


@pytest.fixture(scope="module")
def cors_apps() -> dict[tuple[tuple[str, ...], bool], Flask]:
    """Apps for both origin settings, with the any-origin step and with Flask-CORS alone."""

    def build(origins: tuple[str, ...]) -> Flask:
        app = create_app(Settings(handlers_dir=FIXTURE_HANDLERS / "ok", cors_origins=origins))
        app.testing = True
        return app

    apps = {(origins, True): build(origins) for origins in (ANY, NAMED)}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pipeline, "any_origin_headers", lambda *args, **kwargs: None)
        apps.update({(origins, False): build(origins) for origins in (ANY, NAMED)})
    return apps


def _answer(app: Flask, method: str, path: str, headers: dict[str, str], body: Any) -> tuple[Any, ...]:
    headers = {"X-Request-Id": "cors-1", **headers}
    with app.test_client().open(path, method=method, headers=headers, json=body) as answer:
        return answer.status_code, answer.headers.to_wsgi_list(), answer.get_data()


@pytest.mark.parametrize(("method", "path", "headers", "body"), REQUESTS)
@pytest.mark.parametrize("origins", [ANY, NAMED], ids=["any-origin", "named-origins"])
def test_answers_are_byte_for_byte_flask_cors_own(
    cors_apps: dict[tuple[tuple[str, ...], bool], Flask],
    origins: tuple[str, ...],
    method: str,
    path: str,
    headers: dict[str, str],
    body: Any,
) -> None:
    ours = _answer(cors_apps[origins, True], method, path, headers, body)
    flask_cors_alone = _answer(cors_apps[origins, False], method, path, headers, body)

    assert ours == flask_cors_alone


@pytest.mark.parametrize(
    ("method", "headers", "flask_cors_works"),
    [("POST", SHOP, False), ("POST", {}, False), ("OPTIONS", {**SHOP, **PREFLIGHT}, True)],
    ids=["post-origin", "post-no-origin", "preflight"],
)
def test_with_any_origin_flask_cors_works_only_on_preflights(
    fixture_client: Any, monkeypatch: pytest.MonkeyPatch, method: str, headers: dict[str, str], flask_cors_works: bool
) -> None:
    worked = []
    monkeypatch.setattr(flask_cors.extension, "set_cors_headers", lambda response, options: worked.append(response))

    fixture_client.open("/v1/Echo", method=method, headers=headers, json={"text": "hi"} if method == "POST" else None)

    assert bool(worked) is flask_cors_works


def test_named_origins_have_no_any_origin_step() -> None:
    assert any_origin_headers(Settings(cors_origins=NAMED)) is None
    assert any_origin_headers(Settings()) is not None
