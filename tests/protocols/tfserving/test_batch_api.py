"""POST /v1/models/<Name>:predict: TF Serving / KServe v1 / Vertex AI instances and predictions."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import FIXTURE_HANDLERS
from tests.servers import ServerProcess

BATCH_HANDLERS = FIXTURE_HANDLERS / "batch"
JSON = "application/json"


@pytest.fixture
def batch_app(make_app: Callable[..., Flask]) -> Flask:
    return make_app(handlers_dir=BATCH_HANDLERS, predict_max_instances=10)


@pytest.fixture
def batch_client(batch_app: Flask) -> FlaskClient:
    return batch_app.test_client()


def _calls(app: Flask) -> dict[str, Any]:
    calls: dict[str, Any] = app.extensions["serving"].registry.get("Batched").ensure_loaded()
    return calls


def test_tutorial_model_answers_predictions_in_order(lazy_client: FlaskClient) -> None:
    response = lazy_client.post("/v1/models/XXXModel:predict", json={"instances": [{"name": "Leo"}, {"name": "Ann"}]})

    assert response.status_code == 200
    assert response.get_json() == {"predictions": ["Hello, Leo!", "Hello, Ann!"]}


def test_many_instances_go_through_predict_batch_in_chunks_of_max_batch_size(
    batch_app: Flask, batch_client: FlaskClient
) -> None:
    instances = [{"x": i} for i in range(10)]

    response = batch_client.post("/v1/models/Batched:predict", json={"instances": instances})

    assert response.status_code == 200
    assert response.get_json()["predictions"] == [{"double": 2 * i, "via": "batch"} for i in range(10)]
    assert _calls(batch_app)["batch_sizes"] == [4, 4, 2]  # BATCH max_batch_size is 4
    assert _calls(batch_app)["single_calls"] == 0


def test_one_instance_uses_predict(batch_app: Flask, batch_client: FlaskClient) -> None:
    response = batch_client.post("/v1/models/Batched:predict", json={"instances": [{"x": 5}]})

    assert response.get_json() == {"predictions": [{"double": 10, "via": "single"}]}
    assert _calls(batch_app)["batch_sizes"] == []


def test_model_without_predict_batch_is_called_per_instance(batch_client: FlaskClient) -> None:
    response = batch_client.post("/v1/models/Shout:predict", json={"instances": ["a", "b", "c"]})

    assert response.get_json() == {"predictions": ["A", "B", "C"]}


def test_empty_instances_give_empty_predictions(batch_client: FlaskClient) -> None:
    response = batch_client.post("/v1/models/Batched:predict", json={"instances": []})

    assert response.status_code == 200
    assert response.get_json() == {"predictions": []}


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"instances": [{"x": 1}], "parameters": {}}, id="empty-parameters"),
        pytest.param({"instances": [{"x": 1}], "parameters": None}, id="null-parameters"),
        pytest.param({"instances": [{"x": 1}], "signature_name": "serving_default"}, id="default-signature"),
        pytest.param({"instances": [{"x": 1}], "signature_name": None}, id="null-signature"),
    ],
)
def test_optional_keys_clients_send(batch_client: FlaskClient, body: dict[str, Any]) -> None:
    response = batch_client.post("/v1/models/Batched:predict", json=body)

    assert response.status_code == 200
    assert response.get_json() == {"predictions": [{"double": 2, "via": "single"}]}


def test_versioned_url_serves_the_declared_version(batch_client: FlaskClient) -> None:
    ok = batch_client.post("/v1/models/Batched/versions/3:predict", json={"instances": [{"x": 1}]})
    other = batch_client.post("/v1/models/Batched/versions/4:predict", json={"instances": [{"x": 1}]})

    assert ok.status_code == 200
    assert other.status_code == 404
    assert other.get_json()["error"] == "Model Batched serves version '3', not '4'"


# Every invalid request: status, code, JSON path, and a part of the message. Each error
# must carry `error` (TF Serving clients) equal to `message`.
@pytest.mark.parametrize(
    ("body", "status", "code", "path", "message_part"),
    [
        pytest.param([{"x": 1}], 400, "invalid_input", "$", "JSON object", id="body-is-a-list"),
        pytest.param({}, 400, "invalid_input", "$", "'instances' is a required property", id="no-instances"),
        pytest.param({"instances": {"x": 1}}, 400, "invalid_input", "$.instances", "must be an array", id="not-array"),
        pytest.param(
            {"instances": [{"x": 1}], "extra": 1},
            400,
            "invalid_input",
            "$.extra",
            "Unknown key 'extra'",
            id="extra-key",
        ),
        pytest.param(
            {"inputs": {"x": [1, 2]}}, 400, "unsupported_format", "$.inputs", "columnar 'inputs'", id="columnar-inputs"
        ),
        pytest.param(
            {"instances": [], "a b": 1}, 400, "invalid_input", "$['a b']", "Unknown key 'a b'", id="odd-extra-key"
        ),
        pytest.param(
            {"instances": [{"x": 1}], "parameters": {"temperature": 0.5}},
            400,
            "invalid_input",
            "$.parameters.temperature",
            "takes no parameters",
            id="non-empty-parameters",
        ),
        pytest.param(
            {"instances": [{"x": 1}], "parameters": [1]},
            400,
            "invalid_input",
            "$.parameters",
            "object",
            id="bad-params",
        ),
        pytest.param(
            {"instances": [{"x": 1}], "signature_name": "other"},
            400,
            "invalid_input",
            "$.signature_name",
            "'serving_default'",
            id="unknown-signature",
        ),
        pytest.param(
            {"instances": [{"x": 1}, {"x": 2}, {"x": 3}, {"x": 4, "name": 7}]},
            400,
            "invalid_input",
            "$.instances[3].name",
            "instances[3]: 7 is not of type 'string'",
            id="fourth-instance-invalid",
        ),
        pytest.param(
            {"instances": [{"x": 1}, {}]},
            400,
            "invalid_input",
            "$.instances[1]",
            "instances[1]: 'x' is a required property",
            id="missing-property",
        ),
        pytest.param(
            {"instances": [{"x": i} for i in range(11)]},
            413,
            "too_many_instances",
            None,
            "11 instances in one request; at most 10",
            id="over-max-instances",
        ),
    ],
)
def test_invalid_batch_requests(
    batch_app: Flask,
    batch_client: FlaskClient,
    body: Any,
    status: int,
    code: str,
    path: str | None,
    message_part: str,
) -> None:
    response = batch_client.post("/v1/models/Batched:predict", json=body)

    assert response.status_code == status
    error = response.get_json()
    assert error["code"] == code
    assert message_part in error["message"]
    assert error["error"] == error["message"]
    assert error.get("path") == path
    assert _calls(batch_app) == {"batch_sizes": [], "single_calls": 0}  # no model code ran


def test_every_invalid_instance_is_listed(batch_client: FlaskClient) -> None:
    instances = [{"x": 1}, {"x": "a"}, {"x": 2}, {"y": 1}]

    error = batch_client.post("/v1/models/Batched:predict", json={"instances": instances}).get_json()

    assert error["index"] == 1
    assert [(e["index"], e["path"]) for e in error["errors"]] == [(1, "$.instances[1].x"), (3, "$.instances[3]")]


def test_instance_the_model_rejects_fails_the_whole_request_naming_it(
    batch_app: Flask, batch_client: FlaskClient
) -> None:
    instances = [{"x": 1}, {"x": 2}, {"x": 3, "reject": True}]

    response = batch_client.post("/v1/models/Batched:predict", json={"instances": instances})

    assert response.status_code == 400
    error = response.get_json()
    assert error["code"] == "invalid_input"
    assert error["message"] == "instances[2]: x=3 is rejected by the model"
    assert error["error"] == error["message"]
    assert (error["index"], error["path"]) == (2, "$.instances[2]")
    assert "predictions" not in error
    # predict_batch raised, so each item was retried alone to find the culprit.
    assert _calls(batch_app) == {"batch_sizes": [3], "single_calls": 3}


def test_failure_in_one_chunk_stops_the_later_chunks(batch_app: Flask, batch_client: FlaskClient) -> None:
    instances = [{"x": 0, "reject": True}] + [{"x": i} for i in range(1, 10)]

    response = batch_client.post("/v1/models/Batched:predict", json={"instances": instances})

    assert response.status_code == 400
    assert _calls(batch_app)["batch_sizes"] == [4]


def test_several_failures_are_listed_with_their_codes(batch_client: FlaskClient) -> None:
    instances = [{"x": 1, "crash": True}, {"x": 2}, {"x": 3, "reject": True}]

    response = batch_client.post("/v1/models/Batched:predict", json={"instances": instances})

    assert response.status_code == 500
    error = response.get_json()
    assert error["index"] == 0
    assert [(e["index"], e["code"]) for e in error["errors"]] == [(0, "internal"), (2, "invalid_input")]
    assert "secret" not in response.get_data(as_text=True)


@pytest.mark.parametrize(
    ("value", "expected_hex"),
    [
        pytest.param({"b64": base64.b64encode(b"\x00\xffhi").decode()}, "00ff6869", id="standard"),
        pytest.param({"b64": base64.urlsafe_b64encode(b"\xfb\xff").decode()}, "fbff", id="url-safe"),
        pytest.param({"b64": "aGVsbG8"}, "68656c6c6f", id="no-padding"),
        pytest.param({"b64": "aGVs\nbG8="}, "68656c6c6f", id="line-break"),
        pytest.param({"b64": ""}, "", id="empty"),
        pytest.param("aGVsbG8=", "68656c6c6f", id="plain-string"),
    ],
)
def test_b64_objects_become_the_base64_string(batch_client: FlaskClient, value: Any, expected_hex: str) -> None:
    response = batch_client.post("/v1/models/Blob:predict", json={"instances": [{"data": value}]})

    assert response.status_code == 200, response.get_json()
    assert response.get_json()["predictions"][0]["hex"] == expected_hex


def test_b64_object_as_the_whole_instance(batch_client: FlaskClient) -> None:
    response = batch_client.post("/v1/models/Shout:predict", json={"instances": [{"b64": "aGk="}]})

    assert response.get_json() == {"predictions": ["AGK="]}


@pytest.mark.parametrize(
    ("value", "path", "message_part"),
    [
        pytest.param({"b64": "not base64!"}, "$.instances[0].data.b64", "not valid base64", id="bad-characters"),
        pytest.param({"b64": "aGVsb"}, "$.instances[0].data.b64", "not valid base64", id="bad-length"),
        pytest.param({"b64": 12}, "$.instances[0].data.b64", "must be a base64 string", id="not-a-string"),
        pytest.param({"b64": "aGk=", "x": 1}, "$.instances[0].data", "is not of type 'string'", id="extra-key"),
        pytest.param({"b64": "aGVsbG8gd29ybGQ="}, "$.instances[0].data", "is too long", id="schema-still-applies"),
    ],
)
def test_bad_b64_values_are_400_naming_the_path(
    batch_client: FlaskClient, value: Any, path: str, message_part: str
) -> None:
    response = batch_client.post("/v1/models/Blob:predict", json={"instances": [{"data": value}]})

    assert response.status_code == 400
    error = response.get_json()
    assert error["path"] == path
    assert message_part in error["message"]
    assert error["message"].startswith("instances[0]: ")
    assert error["index"] == 0


def test_deeply_nested_instance_is_a_400_not_a_crash(batch_client: FlaskClient) -> None:
    # Deep enough to break a recursive walk, shallow enough for the JSON parser.
    nested = "[" * 900 + "]" * 900
    body = '{"instances": [' + nested + "]}"

    response = batch_client.post("/v1/models/Blob:predict", data=body, content_type=JSON)

    assert response.status_code == 400
    assert response.get_json()["path"] == "$.instances[0]"


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "code"),
    [
        pytest.param("POST", "/v1/models/Nope:predict", {"json": {"instances": []}}, 404, "model_not_found", id="404"),
        pytest.param("GET", "/v1/models/Batched:predict", {}, 405, "method_not_allowed", id="405-get"),
        pytest.param("PUT", "/v1/models/Batched/versions/3:predict", {}, 405, "method_not_allowed", id="405-put"),
        pytest.param("POST", "/v1/models/Batched:predict", {}, 400, "no_json", id="no-json"),
        pytest.param(
            "POST", "/v1/models/Batched:predict", {"data": "{", "content_type": JSON}, 400, "malformed_json", id="bad"
        ),
        pytest.param(
            "POST",
            "/v1/models/Batched:predict",
            {"data": '{"instances": [' + "1," * 20000 + "1]}", "content_type": JSON},
            413,
            "payload_too_large",
            id="413-body",
        ),
    ],
)
def test_every_error_on_batch_routes_carries_error(
    make_app: Callable[..., Flask], method: str, path: str, kwargs: dict[str, Any], status: int, code: str
) -> None:
    client = make_app(handlers_dir=BATCH_HANDLERS, max_request_bytes=4096).test_client()

    response = client.open(path, method=method, **kwargs)

    assert response.status_code == status
    body = response.get_json()
    assert body["code"] == code
    assert body["error"] == body["message"]


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        pytest.param("GET", "/v1/models/Batched:predict", {"POST", "OPTIONS"}, id="get-batch"),
        pytest.param("OPTIONS", "/v1/models/Batched:predict", {"POST", "OPTIONS"}, id="options-batch"),
        pytest.param("DELETE", "/v1/models/Batched/versions/3:predict", {"POST", "OPTIONS"}, id="delete-versioned"),
        pytest.param("POST", "/v1/models", {"GET", "HEAD", "OPTIONS"}, id="post-model-list"),
    ],
)
def test_allow_header_names_only_the_routes_methods(
    batch_client: FlaskClient, method: str, path: str, allowed: set[str]
) -> None:
    response = batch_client.open(path, method=method)

    assert response.status_code == (204 if method == "OPTIONS" else 405)
    assert set(response.headers["Allow"].split(", ")) == allowed


def test_errors_on_other_routes_do_not_grow_an_error_key(lazy_client: FlaskClient) -> None:
    body = lazy_client.post("/v1/XXXModel", json={}).get_json()

    assert "error" not in body


def test_model_that_cannot_serve_is_a_503_with_error(fixture_client: FlaskClient) -> None:
    response = fixture_client.post("/v1/models/NeedsMissing:predict", json={"instances": [{}]})

    assert response.status_code == 503
    assert "a_package_that_is_not_installed_anywhere" in response.get_json()["error"]


def test_output_breaking_its_schema_fails_the_batch(fixture_client: FlaskClient) -> None:
    response = fixture_client.post("/v1/models/BadOutput:predict", json={"instances": [{}, {}]})

    assert response.status_code == 500
    assert response.get_json()["index"] == 0


@pytest.mark.e2e
@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_documented_tf_serving_requests_with_curl(lazy_gunicorn: ServerProcess) -> None:
    """The two batch requests of docs/protocols.md, sent with curl, answer as printed there."""
    url = lazy_gunicorn.url + "/v1/models/XXXModel:predict"

    def curl(data: str) -> tuple[int, dict[str, Any]]:
        options = ["--silent", "--write-out", "\n%{http_code}", "--header", "Content-Type: application/json"]
        result = subprocess.run(
            ["curl", *options, "--request", "POST", "--data", data, "--url", url],
            capture_output=True,
            text=True,
            check=True,
        )
        body, status = result.stdout.rsplit("\n", 1)
        return int(status), json.loads(body)

    ok = curl('{"instances": [{"name": "Leo"}, {"name": "Ann"}]}')
    bad = curl('{"instances": [{"name": "Leo"}, {"nam": "Ann"}]}')

    assert ok == (200, {"predictions": ["Hello, Leo!", "Hello, Ann!"]})
    assert bad[0] == 400
    # A TF Serving client reads `error`; ours read `message` and `path`.
    assert bad[1]["error"] == "instances[1]: 'name' is a required property"
    assert bad[1]["path"] == "$.instances[1]"
