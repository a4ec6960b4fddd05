"""The HTTP contract every deployment target must honour, as data.

`CASES` is replayed against each target in tests/platform/test_e2e_platforms.py (gunicorn as
app.yaml starts it, dev_appserver.py, the Dockerfile's CMD, functions-framework) and
against the Cloud Functions adapter in tests/platform/test_functions.py. A case whose route is not
in this build (`requires`: a module of the app) is skipped with that reason; adding a
route to the contract is one entry here.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from typing import Any

import pytest

JSON_UTF8 = {"Content-Type": "application/json; charset=UTF-8"}
PREFLIGHT = {
    "Origin": "https://widgets.example",
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "content-type",
}


@dataclass(frozen=True)
class Case:
    """One request and what its answer must contain (JSON compared as a partial match)."""

    id: str
    method: str
    path: str
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    json: dict[str, Any] | None = None
    response_headers: dict[str, str] = field(default_factory=dict)
    requires: str | None = None  # a module that provides the route

    def skip_if_absent(self) -> None:
        if self.requires and importlib.util.find_spec(self.requires) is None:
            pytest.skip(f"{self.path} is served by {self.requires}, which this build does not have yet")


CASES = [
    # The tutorial's request-demo.sh, byte for byte.
    Case("tutorial-no-json", "POST", "/v1/XXXModel", 400, json={"message": "No JSON object"}),
    Case(
        "tutorial-invalid",
        "POST",
        "/v1/XXXModel",
        400,
        headers=JSON_UTF8,
        body=b"{}",
        json={"message": "'name' is a required property"},
    ),
    Case(
        "tutorial-valid",
        "POST",
        "/v1/XXXModel",
        200,
        headers=JSON_UTF8,
        body=b'{"name": "Leo"}',
        json={"result": "Hello, Leo!"},
    ),
    Case(
        "error-unknown-model",
        "POST",
        "/v1/NoSuchModel",
        404,
        headers=JSON_UTF8,
        body=b"{}",
        json={"code": "model_not_found"},
    ),
    Case(
        "cors-preflight",
        "OPTIONS",
        "/v1/XXXModel",
        204,
        headers=PREFLIGHT,
        response_headers={"Access-Control-Allow-Origin": "*"},
    ),
    Case("readyz", "GET", "/readyz", 200, json={"status": "ready", "models": {"XXXModel": {"status": "ready"}}}),
    Case(
        "batch",
        "POST",
        "/v1/models/XXXModel:predict",
        200,
        headers=JSON_UTF8,
        body=b'{"instances": [{"name": "Leo"}, {"name": "Ada"}]}',
        json={"predictions": ["Hello, Leo!", "Hello, Ada!"]},
        requires="serving.protocols.tfserving",
    ),
]


def contains(actual: Any, expected: Any) -> bool:
    """True when `expected` is a partial match of `actual` (dicts by key, recursively)."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(k in actual and contains(actual[k], v) for k, v in expected.items())
    return bool(actual == expected)


def assert_answer(case: Case, status: int, headers: Any, body: bytes) -> None:
    """Fail with the whole answer when it breaks `case`'s contract."""
    import json

    shown = f"{case.id}: {status} {dict(headers)} {body[:500]!r}"
    assert status == case.status, shown
    assert headers.get("X-Request-Id"), shown
    for name, value in case.response_headers.items():
        assert headers.get(name) == value, shown
    if case.json is not None:
        assert headers.get("Content-Type", "").startswith("application/json"), shown
        assert contains(json.loads(body), case.json), shown
    if status >= 400:
        # Every error, on every target, is JSON with a message: never an HTML page.
        assert "message" in json.loads(body), shown
