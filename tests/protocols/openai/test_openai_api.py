"""POST /v1/embeddings and OpenAI's model list, on the Flask test client with fixture handlers."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from flask import Flask
from flask.testing import FlaskClient

from serving.http.state import get_state
from tests.conftest import FIXTURE_HANDLERS

HANDLERS = FIXTURE_HANDLERS / "protocols"


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app(handlers_dir=HANDLERS, predict_max_instances=5)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def _embed(client: FlaskClient, **body: Any) -> Any:
    return client.post("/v1/embeddings", json={"model": "Embedder", **body})


def test_embeddings_answer_in_openai_shape_with_usage(client: FlaskClient) -> None:
    response = _embed(client, input=["a b c", "hello"])

    assert response.status_code == 200
    body = response.get_json()
    assert body["object"] == "list"
    assert body["model"] == "Embedder"
    assert [item["index"] for item in body["data"]] == [0, 1]
    assert {item["object"] for item in body["data"]} == {"embedding"}
    single = client.post("/v1/Embedder", json={"text": "a b c"}).get_json()["result"]["embedding"]
    assert body["data"][0]["embedding"] == single
    assert body["usage"] == {"prompt_tokens": 4, "total_tokens": 4}


def test_a_single_string_is_one_input(client: FlaskClient) -> None:
    body = _embed(client, input="hello there").get_json()

    assert len(body["data"]) == 1
    assert body["usage"]["prompt_tokens"] == 2


def test_base64_is_little_endian_float32_of_the_float_answer(client: FlaskClient) -> None:
    texts = ["one", "two words", "three more words"]
    floats = _embed(client, input=texts, encoding_format="float").get_json()["data"]
    packed = _embed(client, input=texts, encoding_format="base64").get_json()["data"]

    for as_float, as_base64 in zip(floats, packed, strict=True):
        decoded = np.frombuffer(base64.b64decode(as_base64["embedding"]), dtype="<f4")
        np.testing.assert_array_equal(decoded, np.array(as_float["embedding"], dtype=np.float32))


def test_inputs_run_in_batches_of_the_models_size_in_order(app: Flask, client: FlaskClient) -> None:
    runtime = get_state(app).registry.get("Embedder")
    assert runtime is not None
    assert runtime.spec.predict_batch is not None
    calls = runtime.spec.predict_batch.__globals__["CALLS"]  # the fixture module's record
    calls.clear()
    texts = ["a", "bb", "ccc", "dddd", "eeeee"]

    body = _embed(client, input=texts).get_json()

    assert calls == [2, 2]  # the fifth ran alone, through predict
    singles = [client.post("/v1/Embedder", json={"text": t}).get_json()["result"]["embedding"] for t in texts]
    assert [item["embedding"] for item in body["data"]] == singles


def test_dimensions_equal_to_the_models_is_accepted(client: FlaskClient) -> None:
    assert _embed(client, input="x", dimensions=4).status_code == 200


def test_optional_arguments_sent_as_null_count_as_not_sent(client: FlaskClient) -> None:
    response = _embed(client, input="x", dimensions=None, encoding_format=None, user=None)

    assert response.status_code == 200
    assert isinstance(response.get_json()["data"][0]["embedding"], list)


@pytest.mark.parametrize(
    ("body", "status", "param", "code", "message"),
    [
        ({"model": "Nope", "input": "x"}, 404, None, "model_not_found", "'Nope' does not exist"),
        ({"model": "Scalar", "input": "x"}, 400, "model", "model_not_supported", "embedding models here: Embedder"),
        ({"model": "Embedder", "input": [1, 2]}, 400, "input", "unsupported_input", "Token arrays are not supported"),
        ({"model": "Embedder", "input": [[1], [2]]}, 400, "input", "unsupported_input", "Token arrays"),
        ({"model": "Embedder", "input": []}, 400, "input", "invalid_value", "non-empty array of strings"),
        ({"model": "Embedder", "input": ["a", 3]}, 400, "input", "invalid_value", "input[1] must be a string"),
        ({"model": "Embedder", "input": ["a", ""]}, 400, "input", "invalid_input", "input[1]: '' should be non-empty"),
        ({"model": "Embedder", "input": ["ok", "reject"]}, 400, "input", "invalid_input", "input[1]: this text cannot"),
        ({"model": "Embedder", "input": ["a"] * 6}, 413, "input", "too_many_instances", "at most 5 are accepted"),
        ({"model": "Embedder", "input": "x", "dimensions": 3}, 400, "dimensions", "unsupported_dimensions", "4-dim"),
        ({"model": "Embedder", "input": "x", "dimensions": 0}, 400, "dimensions", "invalid_value", "positive integer"),
        (
            {"model": "Embedder", "input": "x", "encoding_format": "hex"},
            400,
            "encoding_format",
            "invalid_value",
            "'float'",
        ),
        ({"model": "Embedder", "input": "x", "user": 1}, 400, "user", "invalid_value", "'user' must be a string"),
        ({"model": "Embedder", "input": "x", "n": 1}, 400, "n", "invalid_value", "Unrecognized request argument"),
        ({"input": "x"}, 400, "model", "missing_required_parameter", "'model' is a required"),
        ({"model": "Embedder"}, 400, "input", "missing_required_parameter", "'input' is a required"),
        ({"model": 3, "input": "x"}, 400, "model", "invalid_value", "'model' must be a string"),
        (["not", "an", "object"], 400, None, "invalid_value", "must be a JSON object"),
    ],
)
def test_bad_requests_get_openai_errors(
    client: FlaskClient, body: Any, status: int, param: str | None, code: str, message: str
) -> None:
    response = client.post("/v1/embeddings", json=body)

    assert response.status_code == status
    error = response.get_json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == ("not_found_error" if status == 404 else "invalid_request_error")
    assert (error["param"], error["code"]) == (param, code)
    assert message in error["message"]


@pytest.mark.parametrize(
    ("method", "kwargs", "status", "error_type"),
    [
        ("get", {}, 405, "invalid_request_error"),
        ("post", {"data": "not json", "content_type": "text/plain"}, 400, "invalid_request_error"),
        ("post", {"data": "{", "content_type": "application/json"}, 400, "invalid_request_error"),
    ],
    ids=["405", "no-json", "malformed"],
)
def test_routing_and_body_errors_also_take_openai_shape(
    client: FlaskClient, method: str, kwargs: dict[str, Any], status: int, error_type: str
) -> None:
    response = getattr(client, method)("/v1/embeddings", **kwargs)

    assert response.status_code == status
    assert response.get_json()["error"]["type"] == error_type


def test_a_missing_api_key_is_an_openai_authentication_error(make_app: Callable[..., Flask]) -> None:
    from serving.config.api_keys import parse_key_specs

    app = make_app(handlers_dir=HANDLERS, api_keys=tuple(parse_key_specs("k:secret-0123456789abcdef")))

    response = app.test_client().post("/v1/embeddings", json={"model": "Embedder", "input": "x"})

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.get_json()["error"]["type"] == "authentication_error"
    assert "Missing API key" in response.get_json()["error"]["message"]


def test_other_routes_keep_their_own_error_shape(client: FlaskClient) -> None:
    body = client.post("/v1/Embedder", json={"text": ""}).get_json()

    assert isinstance(body["message"], str)
    assert "error" not in body


def test_no_model_route_is_taken_for_embeddings(client: FlaskClient) -> None:
    assert client.get("/v1/models/embeddings").status_code == 404


def test_models_list_carries_openais_list_beside_its_own(client: FlaskClient) -> None:
    body = client.get("/v1/models").get_json()

    assert [model["name"] for model in body["models"]] == [model["id"] for model in body["data"]]
    assert body["object"] == "list"
    entry = next(model for model in body["data"] if model["id"] == "Embedder")
    assert entry["object"] == "model"
    assert entry["owned_by"] == "model-serving"
    assert isinstance(entry["created"], int)
    assert entry["created"] > 0


def test_one_model_carries_openais_keys_beside_its_own(client: FlaskClient) -> None:
    body = client.get("/v1/models/Embedder").get_json()

    assert (body["id"], body["object"], body["name"], body["version"]) == ("Embedder", "model", "Embedder", "3")
