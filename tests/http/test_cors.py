"""CORS for browser widgets: preflight answered, origins from CORS_ORIGINS, no credentials."""

from __future__ import annotations

from typing import Any

import pytest

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
