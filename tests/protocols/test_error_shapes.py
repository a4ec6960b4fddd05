"""Every error takes the shape of the protocol whose route was called, whatever refused it.

One renderer (serving/http/error_handlers.py) picks the protocol from the request: the
matched route's blueprint, the route a 405's path matches, or the protocol whose URL
space holds a 404's path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Blueprint, Flask
from flask.testing import FlaskClient

from serving.config.api_keys import parse_key_specs
from serving.errors import ApiError, BadRequest
from serving.http.error_handlers import register_error_handlers
from tests.conftest import FIXTURE_HANDLERS

KEY = "shapes-secret-0123456789abcdef"


@pytest.fixture
def keyed_client(make_app: Callable[..., Flask]) -> FlaskClient:
    """The protocols' fixture models behind an API key, so refusals happen before any view."""
    app = make_app(handlers_dir=FIXTURE_HANDLERS / "protocols", api_keys=tuple(parse_key_specs(f"ops:{KEY}")))
    return app.test_client()


def _tf_serving(body: dict[str, Any]) -> bool:
    return body["error"] == body["message"] and isinstance(body["code"], str)


def _openai(body: dict[str, Any]) -> bool:
    return set(body["error"]) == {"message", "type", "param", "code"} and "message" not in body


def _native(body: dict[str, Any]) -> bool:
    return isinstance(body["message"], str) and "error" not in body


@pytest.mark.parametrize(
    ("method", "path", "keyed", "status", "shape"),
    [
        # Refused by the pipeline (no key) before the view: still the route's protocol.
        pytest.param("POST", "/v1/models/Kinds:predict", False, 401, _tf_serving, id="tfserving-401"),
        pytest.param("POST", "/v1/embeddings", False, 401, _openai, id="openai-401"),
        pytest.param("POST", "/v2/models/Kinds/infer", False, 401, _tf_serving, id="oip-401"),
        pytest.param("POST", "/v1/Kinds", False, 401, _native, id="native-401"),
        # Routing: a 405 is the protocol of the route the path matches.
        pytest.param("GET", "/v1/models/Kinds:predict", True, 405, _tf_serving, id="tfserving-405"),
        pytest.param("GET", "/v1/embeddings", True, 405, _openai, id="openai-405"),
        pytest.param("PUT", "/v2/models/Kinds/infer", True, 405, _tf_serving, id="oip-405"),
        pytest.param("PUT", "/v1/Kinds", True, 405, _native, id="native-405"),
        # A 404 is the protocol whose URL space holds the path, the most specific first.
        pytest.param("GET", "/v2/no/such/route", True, 404, _tf_serving, id="oip-404"),
        pytest.param("POST", "/v1/embeddings/extra", True, 404, _openai, id="openai-404"),
        pytest.param("POST", "/v1/models/a/b:predict", True, 404, _tf_serving, id="tfserving-404"),
        pytest.param("GET", "/v1/no/such/route", True, 404, _native, id="native-404"),
        pytest.param("GET", "/no/such/route", True, 404, _native, id="outside-every-protocol"),
        # Raised by the view.
        pytest.param("POST", "/v1/models/Nope:predict", True, 404, _tf_serving, id="tfserving-view-404"),
        pytest.param("POST", "/v2/models/Kinds/versions/9/infer", True, 404, _tf_serving, id="oip-view-404"),
    ],
)
def test_each_error_has_the_shape_of_the_route_called(
    keyed_client: FlaskClient, method: str, path: str, keyed: bool, status: int, shape: Callable[[Any], bool]
) -> None:
    headers = {"X-API-Key": KEY} if keyed else {}

    response = keyed_client.open(path, method=method, headers=headers, json={})

    assert response.status_code == status
    body = response.get_json()
    assert shape(body), body
    assert body["request_id"] == response.headers["X-Request-Id"]


def _error_message_only(error: ApiError) -> dict[str, Any]:
    return {"errorMessage": error.message}


@pytest.fixture
def extra_client() -> FlaskClient:
    """A bare app with one more protocol, whose error body is BigQuery's `{"errorMessage"}`."""
    extra = Blueprint("extra", __name__, url_prefix="/v1/extra")

    @extra.post("/<name>")
    def call(name: str) -> str:
        if name == "bad":
            raise BadRequest("bad input")
        raise RuntimeError("a bug")

    app = Flask(__name__)
    register_error_handlers(app, {"extra": _error_message_only})
    app.register_blueprint(extra)
    return app.test_client()


@pytest.mark.parametrize(
    ("method", "path", "status", "message"),
    [
        pytest.param("POST", "/v1/extra/bad", 400, "bad input", id="raised-4xx"),
        pytest.param("POST", "/v1/extra/bug", 500, "Internal server error", id="unexpected-500"),
        pytest.param("GET", "/v1/extra/x", 405, "Method not allowed", id="405"),
        pytest.param("POST", "/v1/extra/x/y", 404, "Not found", id="404"),
    ],
)
def test_a_new_protocols_error_body_serves_every_error_of_its_routes(
    extra_client: FlaskClient, method: str, path: str, status: int, message: str
) -> None:
    response = extra_client.open(path, method=method)

    assert response.status_code == status
    assert list(response.get_json()) == ["errorMessage"]
    assert response.get_json()["errorMessage"].startswith(message)


def test_other_routes_keep_the_standard_body(extra_client: FlaskClient) -> None:
    body = extra_client.get("/elsewhere").get_json()

    assert body["code"] == "not_found"
    assert body["message"].startswith("Not found")
