"""Security headers on every response, no debug mode on Google Cloud, no server banners."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask, Response, request

from serving.config.settings import Settings, SettingsError
from serving.platform.gunicorn_hardening import json_error_bytes
from serving.security.hardening import HSTS, HTML_CSP, OTHER_CSP, security_headers
from tests.servers import PROJECT_ROOT, VENV_BIN, base_env


@pytest.fixture
def page_app(make_app: Callable[..., Flask]) -> Flask:
    """The app plus an HTML page, standing in for the demo page and docs."""
    app = make_app()

    @app.get("/page")
    def page() -> Response:
        return Response("<!doctype html><title>demo</title>", mimetype="text/html")

    return app


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("GET", "/healthz", {}),
        ("POST", "/v1/XXXModel", {"json": {"name": "Leo"}}),
        ("POST", "/v1/XXXModel", {"json": {}}),
        ("GET", "/no/such/route", {}),
        (
            "OPTIONS",
            "/v1/XXXModel",
            {"headers": {"Origin": "https://a.example", "Access-Control-Request-Method": "POST"}},
        ),
    ],
    ids=["health", "ok", "400", "404", "preflight"],
)
def test_every_response_has_the_baseline_headers(
    page_app: Flask, method: str, path: str, kwargs: dict[str, Any]
) -> None:
    response = page_app.test_client().open(path, method=method, **kwargs)

    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Content-Security-Policy"] == OTHER_CSP
    assert "Strict-Transport-Security" not in response.headers  # plain http


def test_html_pages_get_the_strict_csp(page_app: Flask) -> None:
    response = page_app.test_client().get("/page")
    directives = dict(d.strip().split(" ", 1) for d in response.headers["Content-Security-Policy"].split(";"))

    assert response.headers["Content-Security-Policy"] == HTML_CSP
    assert directives["script-src"] == "'self'"  # no 'unsafe-inline', no 'unsafe-eval'
    assert directives["style-src"] == "'self'"
    assert directives["default-src"] == "'none'"
    assert directives["frame-ancestors"] == "'none'"
    assert response.headers["X-Frame-Options"] == "DENY"


def test_hsts_only_over_https(page_app: Flask) -> None:
    secure = page_app.test_client().get("/healthz", base_url="https://api.example")

    assert secure.headers["Strict-Transport-Security"].startswith("max-age=31536000")


def _setdefault_each(response: Response) -> Response:
    """The security headers as Werkzeug's `setdefault` adds them, one at a time: what the step must match."""
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "no-referrer")
    if response.mimetype == "text/html" and request.method != "OPTIONS":
        headers.setdefault("Content-Security-Policy", HTML_CSP)
        headers.setdefault("X-Frame-Options", "DENY")
    else:
        headers.setdefault("Content-Security-Policy", OTHER_CSP)
    if request.is_secure:
        headers.setdefault("Strict-Transport-Security", HSTS)
    return response


@pytest.mark.parametrize("scheme", ["http", "https"])
@pytest.mark.parametrize("method", ["GET", "POST", "OPTIONS"])
@pytest.mark.parametrize(
    "headers",
    [
        {"Content-Type": "application/json"},
        {"Content-Type": "text/html; charset=utf-8"},
        {"Content-Type": "text/html"},
        {"Content-Type": " text/html ;q=1"},
        {"Content-Type": "Text/HTML"},
        {},
        {"Content-Type": "text/html", "content-security-policy": "default-src 'self'", "X-Frame-Options": "SAMEORIGIN"},
        {"Content-Type": "application/json", "X-CONTENT-TYPE-OPTIONS": "nosniff", "Referrer-Policy": "origin"},
        {"Content-Type": "text/plain", "Strict-Transport-Security": "max-age=60"},
        {"content-type": "application/json", "Content-Type": "text/html"},
    ],
    ids=["json", "html-charset", "html", "html-spaced", "html-capitals", "none", "page-own", "own", "own-hsts", "two"],
)
def test_security_headers_are_what_setdefault_would_add(
    app: Flask, scheme: str, method: str, headers: dict[str, str]
) -> None:
    def response() -> Response:
        made = Response("body")
        del made.headers["Content-Type"]
        made.headers.extend(headers)
        return made

    with app.test_request_context("/x", method=method, base_url=f"{scheme}://api.example"):
        ours = security_headers(response())
        setdefault = _setdefault_each(response())

    assert ours.headers.to_wsgi_list() == setdefault.headers.to_wsgi_list()


@pytest.mark.parametrize(
    ("env", "marker"),
    [
        ({"GAE_ENV": "standard"}, "GAE_ENV"),
        ({"GAE_SERVICE": "default"}, "GAE_ENV"),
        ({"K_SERVICE": "model-serving"}, "K_SERVICE"),
        ({"K_SERVICE": "api", "FUNCTION_TARGET": "api"}, "FUNCTION_TARGET"),
    ],
    ids=["app-engine", "app-engine-service-only", "cloud-run", "cloud-functions"],
)
def test_flask_debug_is_refused_on_google_cloud(env: dict[str, str], marker: str) -> None:
    with pytest.raises(SettingsError, match=f"FLASK_DEBUG is refused on Google Cloud \\({marker} is set\\)"):
        Settings.from_env({"FLASK_DEBUG": "1", **env})


# A developer's machine: dev_appserver.py and functions-framework set their platform's
# variables too, but nothing there faces the internet.
@pytest.mark.parametrize(
    "env",
    [{}, {"GAE_ENV": "localdev"}, {"FUNCTION_TARGET": "api"}],
    ids=["local", "dev-appserver", "functions-framework"],
)
def test_flask_debug_is_allowed_locally(env: dict[str, str]) -> None:
    assert Settings.from_env({"FLASK_DEBUG": "1", **env}).flask_debug is True


def test_create_app_refuses_a_debug_app_on_google_cloud(
    monkeypatch: pytest.MonkeyPatch, make_app: Callable[..., Flask]
) -> None:
    monkeypatch.setenv("FLASK_DEBUG", "1")  # Flask itself reads it into app.debug

    with pytest.raises(SettingsError, match="K_SERVICE is set"):
        make_app(k_service="model-serving")


@pytest.mark.e2e
def test_debug_flag_is_refused_on_cloud_run() -> None:
    result = subprocess.run(
        [str(VENV_BIN / "python"), "main.py", "--debug", "--port", "1"],
        cwd=PROJECT_ROOT,
        env=base_env({"K_SERVICE": "model-serving"}),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 2
    assert "--debug is refused on Google Cloud (K_SERVICE is set)" in result.stderr


def test_gunicorn_error_page_is_json() -> None:
    raw = json_error_bytes(431, "Request Header Fields Too Large", "Error parsing headers: 'x' \u00e9")
    head, body = raw.split(b"\r\n\r\n", 1)

    assert b"Content-Type: application/json" in head
    assert f"Content-Length: {len(body)}".encode() in head
    assert body.startswith(b'{"message": "Request Header Fields Too Large: Error parsing headers')
    assert b"<html" not in raw
