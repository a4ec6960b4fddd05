"""The HTTP contract of POST /v1/<Name>, the model listing and every error status."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

JSON = "application/json; charset=UTF-8"


# The tutorial's request-demo.sh, case by case, with the exact bodies it documents.
@pytest.mark.parametrize(
    ("kwargs", "status", "body"),
    [
        pytest.param({}, 400, {"message": "No JSON object"}, id="no-json-object"),
        pytest.param(
            {"data": "{}", "content_type": JSON}, 400, {"message": "'name' is a required property"}, id="invalid-json"
        ),
        pytest.param({"data": '{"name": "Leo"}', "content_type": JSON}, 200, {"result": "Hello, Leo!"}, id="valid"),
    ],
)
def test_tutorial_cases(client: FlaskClient, kwargs: dict[str, Any], status: int, body: dict[str, Any]) -> None:
    response = client.post("/v1/XXXModel", **kwargs)

    assert response.status_code == status
    assert response.is_json
    assert body.items() <= response.get_json().items()


def test_success_body_is_exactly_the_result(client: FlaskClient) -> None:
    response = client.post("/v1/XXXModel", json={"name": "Leo"})

    assert response.get_json() == {"result": "Hello, Leo!"}


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "code", "message_part"),
    [
        ("POST", "/v1/XXXModel", {"data": "{", "content_type": JSON}, 400, "malformed_json", "Malformed JSON"),
        ("POST", "/v1/XXXModel", {"data": "[]", "content_type": JSON}, 400, "invalid_input", "is not of type 'object'"),
        ("POST", "/v1/XXXModel", {"data": '{"name": 3}', "content_type": JSON}, 400, "invalid_input", "not of type"),
        ("POST", "/v1/XXXModel", {"data": "   ", "content_type": JSON}, 400, "no_json", "No JSON object"),
        ("POST", "/v1/XXXModel", {"data": '{"name": "Leo"}', "content_type": "text/plain"}, 400, "no_json", "No JSON"),
        ("POST", "/v1/XXXModel", {"data": '{"name": NaN}', "content_type": JSON}, 400, "malformed_json", "NaN"),
        ("POST", "/v1/XXXModel", {"data": '{"a": Infinity}', "content_type": JSON}, 400, "malformed_json", "Infinity"),
        (
            "POST",
            "/v1/XXXModel",
            {"data": '{"name": "a", "name": "b"}', "content_type": JSON},
            400,
            "malformed_json",
            "duplicate key",
        ),
        ("POST", "/v1/XXXModel", {"data": "[" * 100_000, "content_type": JSON}, 400, "malformed_json", "nested"),
        (
            "POST",
            "/v1/XXXModel",
            {"data": '{"name": ' + "9" * 1_000_000 + "}", "content_type": JSON},
            400,
            "malformed_json",
            "digits",
        ),
        (
            "POST",
            "/v1/XXXModel",
            {"data": b'{"name": "\xff\xfe"}', "content_type": JSON},
            400,
            "malformed_json",
            "UTF-8",
        ),
        ("POST", "/v1/NoSuchModel", {"json": {"name": "Leo"}}, 404, "model_not_found", "No model named 'NoSuchModel'"),
        ("GET", "/no/such/route", {}, 404, "not_found", "Not found"),
        ("GET", "/v1/XXXModel", {}, 405, "method_not_allowed", "Method not allowed"),
        ("PUT", "/v1/XXXModel", {"json": {}}, 405, "method_not_allowed", "Method not allowed"),
        ("GET", "/v1/models/NoSuchModel", {}, 404, "model_not_found", "NoSuchModel"),
    ],
    ids=lambda value: value if isinstance(value, str) and len(value) < 40 else None,
)
def test_errors_are_json_with_a_message(
    client: FlaskClient, method: str, path: str, kwargs: dict[str, Any], status: int, code: str, message_part: str
) -> None:
    response = client.open(path, method=method, **kwargs)

    assert response.status_code == status
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert body["code"] == code
    assert message_part in body["message"]
    assert body["request_id"] == response.headers["X-Request-Id"]


def test_405_keeps_the_allow_header(client: FlaskClient) -> None:
    response = client.get("/v1/XXXModel")

    assert "POST" in response.headers["Allow"]


def test_validation_error_names_the_json_path(fixture_client: FlaskClient) -> None:
    response = fixture_client.post("/v1/Echo", json={"text": "hi", "n": "three"})

    assert response.status_code == 400
    assert response.get_json()["path"] == "$.n"


def test_huge_invalid_value_is_not_echoed_whole(fixture_client: FlaskClient) -> None:
    response = fixture_client.post("/v1/Echo", json={"text": "x" * 100_000})

    assert response.status_code == 400
    assert len(response.get_data()) < 1000


def test_body_over_the_limit_is_413(make_app: Any) -> None:
    client = make_app(max_request_bytes=2048).test_client()

    response = client.post("/v1/XXXModel", data='{"name": "' + "a" * 4096 + '"}', content_type=JSON)

    assert response.status_code == 413
    assert response.get_json()["code"] == "payload_too_large"


def test_default_limit_is_a_little_under_app_engines_32_mb(app: Any) -> None:
    limit = app.config["MAX_CONTENT_LENGTH"]

    assert 30 * 1024 * 1024 <= limit < 32 * 1000 * 1000


def test_handler_exception_is_a_generic_500_with_request_id(fixture_client: FlaskClient, caplog: Any) -> None:
    response = fixture_client.post("/v1/Crashing", json={}, headers={"X-Request-Id": "req-123"})

    assert response.status_code == 500
    body = response.get_json()
    assert body["code"] == "internal"
    assert body["request_id"] == "req-123"
    assert "secret" not in response.get_data(as_text=True)
    assert any("secret internal detail" in r.getMessage() or r.exc_info for r in caplog.records)


def test_invalid_input_from_the_model_is_a_400(fixture_client: FlaskClient) -> None:
    response = fixture_client.post("/v1/Unusable", json={})

    assert response.status_code == 400
    assert response.get_json()["message"] == "the image is truncated"


def test_result_breaking_output_schema_is_a_500(fixture_client: FlaskClient) -> None:
    response = fixture_client.post("/v1/BadOutput", json={})

    assert response.status_code == 500
    assert "invalid result" in response.get_json()["message"]


def test_output_validation_can_be_switched_off(make_app: Any) -> None:
    from tests.conftest import FIXTURE_HANDLERS

    client = make_app(handlers_dir=FIXTURE_HANDLERS / "ok", validate_output=False).test_client()

    assert client.post("/v1/BadOutput", json={}).get_json() == {"result": "not an integer"}


def test_model_whose_setup_failed_answers_503_with_reason(fixture_client: FlaskClient) -> None:
    response = fixture_client.post("/v1/FailingSetup", json={})

    assert response.status_code == 503
    assert "artifact model.bin is missing" in response.get_json()["message"]


def test_unavailable_model_answers_503_naming_the_package(fixture_client: FlaskClient) -> None:
    response = fixture_client.post("/v1/NeedsMissing", json={})

    assert response.status_code == 503
    assert "a_package_that_is_not_installed_anywhere" in response.get_json()["message"]


def test_list_models(fixture_client: FlaskClient) -> None:
    response = fixture_client.get("/v1/models")

    models = {m["name"]: m for m in response.get_json()["models"]}
    assert set(models) == {"Echo", "Crashing", "FailingSetup", "BadOutput", "Unusable", "NeedsMissing", "Counted"}
    echo = models["Echo"]
    assert echo["description"] == "Echoes its input: a minimal healthy model."
    assert echo["version"] == "2.1"
    assert echo["ready"] is True
    assert echo["input_schema"]["required"] == ["text"]
    assert echo["output_schema"] == {"type": "object", "required": ["text"]}
    assert models["FailingSetup"]["status"] == "failed"
    assert "artifact model.bin is missing" in models["FailingSetup"]["reason"]
    assert models["NeedsMissing"]["status"] == "unavailable"


def test_describe_one_model(client: FlaskClient) -> None:
    body = client.get("/v1/models/XXXModel").get_json()

    assert body["name"] == "XXXModel"
    assert body["status"] == "ready"
    assert body["input_schema"]["required"] == ["name"]


@pytest.mark.parametrize("path", ["/v1/models/", "/v1/models", "/healthz/"])
def test_no_trailing_slash_redirects(client: FlaskClient, path: str) -> None:
    assert client.get(path).status_code == 200


def test_request_id_is_generated_or_echoed(client: FlaskClient) -> None:
    generated = client.post("/v1/XXXModel", json={"name": "Leo"}).headers["X-Request-Id"]
    echoed = client.post("/v1/XXXModel", json={"name": "Leo"}, headers={"X-Request-Id": "abc-1"})
    hostile = client.post("/v1/XXXModel", json={"name": "Leo"}, headers={"X-Request-Id": "a b <script>"})

    assert len(generated) == 32
    assert echoed.headers["X-Request-Id"] == "abc-1"
    assert hostile.headers["X-Request-Id"] != "a b <script>"
