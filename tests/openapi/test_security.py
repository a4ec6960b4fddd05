"""The OpenAPI document and docs under API keys: open to all, and describing the keys."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask

from serving.config.api_keys import parse_key_specs

OPS = "ops-secret-0123456789abcdef"
PUBLIC_OPERATIONS = {
    *("healthz", "readyz", "warmup", "openapi_document", "api_docs", "demo_page"),
    *("v2_live", "v2_ready", "v2_server_metadata"),
    # BigQuery cannot send API keys; its route checks BigQuery's own token when configured.
    *(f"bigquery_{name}" for name in ("Digits", "Iris", "SentenceEmbedding", "XXXModel")),
}


def _operations(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {op["operationId"]: op for ops in doc["paths"].values() for op in ops.values()}


@pytest.fixture
def keyed_app(make_app: Callable[..., Flask]) -> Flask:
    return make_app(api_keys=parse_key_specs(f"ops:{OPS},widget:widget-secret-0123456789:XXXModel"))


@pytest.mark.parametrize(
    "path", ["/openapi.json", "/docs", "/docs/assets/swagger-ui.css", "/docs/assets/docs.js", "/", "/static/widget.js"]
)
def test_documentation_stays_open_with_keys_on(keyed_app: Flask, path: str) -> None:
    response = keyed_app.test_client().get(path)
    response.close()  # file responses hold the file open until closed

    assert response.status_code == 200


def test_protected_operations_document_the_keys_and_401(keyed_app: Flask) -> None:
    doc = keyed_app.test_client().get("/openapi.json").get_json()
    operations = _operations(doc)

    assert set(doc["components"]["securitySchemes"]) == {"bearerAuth", "apiKeyHeader"}
    for operation_id, operation in operations.items():
        if operation_id in PUBLIC_OPERATIONS:
            assert "security" not in operation, operation_id
            assert "401" not in operation["responses"], operation_id
        else:
            assert operation["security"] == [{"bearerAuth": []}, {"apiKeyHeader": []}], operation_id
            assert "401" in operation["responses"], operation_id
            assert "403" in operation["responses"], operation_id  # one key is scoped
    assert "predict_XXXModel" in operations


def test_keys_off_documents_no_security(app: Flask) -> None:
    doc = app.test_client().get("/openapi.json").get_json()

    assert "securitySchemes" not in doc["components"]
    assert all("401" not in op["responses"] for op in _operations(doc).values())


def test_rate_limits_and_time_budget_are_documented(make_app: Callable[..., Flask]) -> None:
    doc = make_app(rate_limits="100/minute").test_client().get("/openapi.json").get_json()
    operations = _operations(doc)

    predict = operations["predict_XXXModel"]["responses"]
    assert "504" in predict
    assert "Retry-After" in predict["429"]["headers"]
    assert "429" in operations["list_models"]["responses"]
    assert "504" not in operations["list_models"]["responses"]
    assert "429" not in operations["healthz"]["responses"]
