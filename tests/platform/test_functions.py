"""Cloud Functions: `main.api` under functions-framework answers every route as the app does.

functions-framework's own `create_app` loads main.py exactly as `functions-framework
--target=api` and Cloud Functions do; its test client then stands in for the HTTP server.
Each route of the app's URL map is requested both through the framework and directly,
and the answers must be the same: status, JSON body, and headers.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

import functions_framework
import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.platform.contract import CASES, Case, assert_answer
from tests.servers import PROJECT_ROOT

# Headers that differ between any two answers (or that the test client sets itself).
_VOLATILE = {"date", "x-request-id", "content-length", "server"}
# What to put in each URL argument when requesting every route.
_SAMPLE_ARGUMENTS = {"name": "XXXModel", "filename": "no-such-file.js"}


@pytest.fixture
def framework_app(monkeypatch: pytest.MonkeyPatch) -> Flask:
    """functions-framework's app for `--target=api --source=main.py`."""
    monkeypatch.chdir(PROJECT_ROOT)
    # The framework registers the loaded file as sys.modules["main"]; put back what was there.
    monkeypatch.delitem(sys.modules, "main", raising=False)
    monkeypatch.setattr(sys, "path", list(sys.path))
    app: Flask = functions_framework.create_app(target="api", source=str(PROJECT_ROOT / "main.py"))
    return app


@pytest.fixture
def framework(framework_app: Flask) -> FlaskClient:
    return framework_app.test_client()


@pytest.fixture
def served_app(framework_app: Flask) -> Flask:
    """The project's app that main.py built inside the framework (the one `api` serves)."""
    app: Flask = sys.modules["main"].app
    return app


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_contract_through_the_framework(framework: FlaskClient, case: Case) -> None:
    case.skip_if_absent()

    response = framework.open(case.path, method=case.method, headers=case.headers, data=case.body)

    assert_answer(case, response.status_code, response.headers, response.data)


def _route_requests(app: Flask) -> list[tuple[str, str]]:
    """(method, path) for every method of every route in `app`'s URL map."""
    requests = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", lambda m: _SAMPLE_ARGUMENTS.get(m.group(1), "sample"), rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD"}):
            requests.append((method, path))
    return requests


def _answer(client: FlaskClient, method: str, path: str) -> tuple[int, dict[str, str], Any]:
    response = client.open(
        path,
        method=method,
        json={"name": "Leo"},
        headers={"Origin": "https://widgets.example", "X-Request-Id": "same-id-for-both"},
    )
    headers = {k.lower(): v for k, v in response.headers.items() if k.lower() not in _VOLATILE}
    body = response.get_data()
    response.close()  # a static file's handle is released when the response is closed
    parsed = json.loads(body) if response.is_json else body
    return response.status_code, headers, parsed


def test_every_route_answers_as_the_app_does(framework: FlaskClient, served_app: Flask) -> None:
    direct = served_app.test_client()
    routes = _route_requests(served_app)
    assert ("POST", "/v1/XXXModel") in routes

    for method, path in routes:
        if method == "OPTIONS" and path.startswith("/static/"):
            # functions-framework's own Flask app has a /static/ route and answers OPTIONS
            # there itself. Harmless: browsers fetch scripts and stylesheets with simple
            # GETs, which never preflight, and those GETs do reach this app (tested below).
            continue
        through = _answer(framework, method, path)
        expected = _answer(direct, method, path)
        if path == "/metrics":
            # Counters: every request, the first of these two included, changes what the
            # next one shows; status and headers must still agree.
            through, expected = through[:2], expected[:2]
        assert through == expected, f"{method} {path}"


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/robots.txt", 404),
        ("GET", "/favicon.ico", 404),
        ("GET", "/no/such/route", 404),
        ("DELETE", "/v1/XXXModel", 405),
        ("PUT", "/healthz", 405),
    ],
    ids=["robots", "favicon", "unknown", "method", "method-health"],
)
def test_framework_errors_are_the_apps_json_errors(framework: FlaskClient, method: str, path: str, status: int) -> None:
    response = framework.open(path, method=method)

    assert response.status_code == status
    assert response.is_json
    assert response.json is not None
    assert response.json["message"]
    assert response.headers["X-Request-Id"] == response.json["request_id"]


def test_body_limit_and_query_reach_the_app(framework: FlaskClient, served_app: Flask) -> None:
    limit = served_app.config["MAX_CONTENT_LENGTH"]

    too_large = framework.post(
        "/v1/XXXModel", data=b"{" + b" " * limit + b"}", headers={"Content-Type": "application/json"}
    )
    with_query = framework.get("/v1/models/XXXModel?verbose=1")

    assert too_large.status_code == 413
    assert too_large.json is not None
    assert too_large.json["code"] == "payload_too_large"
    assert with_query.status_code == 200


def test_preflight_has_no_body_and_no_content_type(framework: FlaskClient) -> None:
    response = framework.options(
        "/v1/XXXModel", headers={"Origin": "https://widgets.example", "Access-Control-Request-Method": "POST"}
    )

    assert response.status_code == 204
    assert "Content-Type" not in response.headers
    assert response.data == b""
