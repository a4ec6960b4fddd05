"""GET /openapi.json: a valid OpenAPI 3.1 document that describes every route and response."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from serving.openapi.builder import embed_schema
from tests.conftest import FIXTURE_HANDLERS

BATCH_HANDLERS = FIXTURE_HANDLERS / "batch"
VERTEX = {"aip_health_route": "/vertex/health", "aip_predict_route": "/vertex/predict"}
# Routes that are not API operations: static files of the docs page, and the endpoints
# only Cloud Tasks may call.
UNDOCUMENTED_ENDPOINTS = {
    "docs.docs_asset",
    "web.static_file",
    "jobs_internal.run_job",
    "jobs_internal.deliver_webhook",
}

APP_CONFIGS = {
    "project-handlers": {"model_loading": "lazy"},
    "edge-case-handlers": {"handlers_dir": FIXTURE_HANDLERS / "ok"},
    "batch-handlers": {"handlers_dir": BATCH_HANDLERS},
    "vertex-ai": {"handlers_dir": BATCH_HANDLERS, "default_model": "Batched", **VERTEX},
    "protocol-handlers": {"handlers_dir": FIXTURE_HANDLERS / "protocols"},
}


def _document(app: Flask) -> dict[str, Any]:
    response = app.test_client().get("/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.get_json()
    return document


@pytest.mark.parametrize("config", list(APP_CONFIGS.values()), ids=list(APP_CONFIGS))
def test_document_is_valid_openapi_3_1(make_app: Callable[..., Flask], config: dict[str, Any]) -> None:
    document = _document(make_app(**config))

    validate(document)  # raises on any violation of the OpenAPI 3.1 schema or a broken $ref
    assert document["openapi"] == "3.1.0"


@pytest.mark.parametrize("config", list(APP_CONFIGS.values()), ids=list(APP_CONFIGS))
def test_every_route_is_documented(make_app: Callable[..., Flask], config: dict[str, Any]) -> None:
    app = make_app(**config)
    paths = _document(app)["paths"]
    names = [runtime.spec.name for runtime in app.extensions["serving"].registry]

    for rule in app.url_map.iter_rules():
        if rule.endpoint in UNDOCUMENTED_ENDPOINTS:
            continue
        templated = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        # A model's routes are documented once per model, with its own schemas; only the
        # model description route keeps `{name}` as a parameter.
        per_model = "{name}" in templated and templated != "/v1/models/{name}"
        expected = [templated.replace("{name}", name) for name in names] if per_model else [templated]
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            for path in expected:
                assert method.lower() in paths.get(path, {}), f"{method} {path} ({rule.endpoint}) is not documented"


def test_every_operation_documents_json_bodies_for_its_responses(make_app: Callable[..., Flask]) -> None:
    document = _document(make_app(handlers_dir=BATCH_HANDLERS, default_model="Batched", **VERTEX))
    operation_ids = []

    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            operation_ids.append(operation["operationId"])
            assert operation["responses"], f"{method} {path} has no responses"
            for status, response in operation["responses"].items():
                media = response["content"]
                if "application/json" in media:
                    assert "X-Request-Id" in response["headers"], f"{method} {path} {status}"
                allowed = (
                    {"application/json"},
                    {"text/html"},
                    {"text/plain", "application/openmetrics-text"},
                    {"application/json", "application/octet-stream"},  # v2 infer with binary tensors
                )
                assert set(media) in allowed, f"{method} {path} {status}"
                if int(status) >= 400:
                    assert "application/json" in media, f"{method} {path} {status} is not a JSON error"

    assert len(operation_ids) == len(set(operation_ids))


def test_model_schemas_and_examples_are_embedded(make_app: Callable[..., Flask]) -> None:
    document = _document(make_app(handlers_dir=BATCH_HANDLERS))

    schemas = document["components"]["schemas"]
    assert schemas["Batched.Input"]["required"] == ["x"]
    assert schemas["Batched.Output"]["properties"]["via"] == {"enum": ["batch", "single"]}
    single = document["paths"]["/v1/Batched"]["post"]["requestBody"]["content"]["application/json"]
    batch = document["paths"]["/v1/models/Batched:predict"]["post"]["requestBody"]["content"]["application/json"]
    assert [e["value"] for e in single["examples"].values()] == [{"x": 1}, {"x": 2, "name": "two"}]
    assert [e["value"] for e in batch["examples"].values()] == [{"instances": [{"x": 1}, {"x": 2, "name": "two"}]}]


def test_local_refs_in_handler_schemas_point_into_the_document(make_app: Callable[..., Flask]) -> None:
    document = _document(make_app(handlers_dir=BATCH_HANDLERS))
    validator = _validator(document, "/components/schemas/Blob.Input")

    ref = document["components"]["schemas"]["Blob.Input"]["properties"]["data"]["$ref"]
    assert ref == "#/components/schemas/Blob.Input/$defs/base64"
    assert validator.is_valid({"data": "aGk="})
    assert not validator.is_valid({"data": 3})


@pytest.mark.parametrize(
    ("schema", "pointer", "expected"),
    [
        pytest.param({"$ref": "#"}, "/a", {"$ref": "#/a"}, id="root-ref"),
        pytest.param(
            {"items": [{"$ref": "#/$defs/x"}]}, "/a", {"items": [{"$ref": "#/a/$defs/x"}]}, id="nested-in-list"
        ),
        pytest.param({"$ref": "https://example.com/s.json"}, "/a", {"$ref": "https://example.com/s.json"}, id="remote"),
        pytest.param(
            {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "string"},
            "/a",
            {"type": "string"},
            id="schema-key",
        ),
    ],
)
def test_embed_schema_reroots_local_refs(schema: dict[str, Any], pointer: str, expected: dict[str, Any]) -> None:
    assert embed_schema(schema, pointer) == expected


def _validator(document: dict[str, Any], pointer: str) -> Draft202012Validator:
    registry: Registry[Any] = Registry().with_resource(
        "urn:openapi", Resource.from_contents(document, default_specification=DRAFT202012)
    )
    return Draft202012Validator({"$ref": "urn:openapi#" + pointer}, registry=registry)


def _response_schema_pointer(document: dict[str, Any], path: str, method: str, status: int) -> str:
    responses = document["paths"][path][method]["responses"]
    assert str(status) in responses, f"{method.upper()} {path} answered {status}, which is not documented"
    escaped = path.replace("~", "~0").replace("/", "~1")
    return f"/paths/{escaped}/{method}/responses/{status}/content/application~1json/schema"


# Real requests and the documented operation each one exercises: every response must
# have a documented status and a body matching its documented schema.
LIVE_REQUESTS = [
    ("batch", "POST", "/v1/Batched", "/v1/Batched", {"x": 2}),
    ("batch", "POST", "/v1/Batched", "/v1/Batched", {"x": "two"}),
    ("batch", "POST", "/v1/Batched", "/v1/Batched", {"x": 2, "reject": True}),
    ("batch", "POST", "/v1/Batched", "/v1/Batched", None),
    ("batch", "POST", "/v1/models/Batched:predict", "/v1/models/Batched:predict", {"instances": [{"x": 1}, {"x": 2}]}),
    ("batch", "POST", "/v1/models/Batched:predict", "/v1/models/Batched:predict", {"instances": [{"x": 1}, {}]}),
    ("batch", "POST", "/v1/models/Batched:predict", "/v1/models/Batched:predict", {"instances": [{"x": 1}] * 11}),
    (
        "batch",
        "POST",
        "/v1/models/Batched:predict",
        "/v1/models/Batched:predict",
        {"instances": [{"x": 1, "crash": True}, {"x": 1, "reject": True}]},
    ),
    (
        "batch",
        "POST",
        "/v1/models/Batched/versions/{version}:predict",
        "/v1/models/Batched/versions/9:predict",
        {"instances": []},
    ),
    ("batch", "POST", "/v1/models/Shout:predict", "/v1/models/Shout:predict", {"instances": [{"b64": "aGk="}]}),
    ("batch", "GET", "/v1/models", "/v1/models", None),
    ("batch", "GET", "/v1/models/{name}", "/v1/models/Blob", None),
    ("batch", "GET", "/v1/models/{name}", "/v1/models/Nope", None),
    ("batch", "GET", "/healthz", "/healthz", None),
    ("batch", "GET", "/readyz", "/readyz", None),
    ("batch", "GET", "/_ah/warmup", "/_ah/warmup", None),
    ("batch", "GET", "/openapi.json", "/openapi.json", None),
    ("batch", "GET", "/vertex/health", "/vertex/health", None),
    ("batch", "POST", "/vertex/predict", "/vertex/predict", {"instances": [{"x": 4}]}),
    ("batch", "POST", "/vertex/predict", "/vertex/predict", {"instances": "no"}),
    ("ok", "POST", "/v1/Crashing", "/v1/Crashing", {}),
    ("ok", "POST", "/v1/NeedsMissing", "/v1/NeedsMissing", {}),
    ("ok", "POST", "/v1/models/FailingSetup:predict", "/v1/models/FailingSetup:predict", {"instances": [{}]}),
    ("ok", "POST", "/v1/Unusable", "/v1/Unusable", {}),
    ("ok", "GET", "/readyz", "/readyz", None),
    ("ok", "GET", "/v1/models", "/v1/models", None),
    ("ok", "GET", "/vertex/health", "/vertex/health", None),
    ("protocols", "GET", "/v1/models", "/v1/models", None),
    ("protocols", "GET", "/v1/models/{name}", "/v1/models/Embedder", None),
    ("protocols", "POST", "/v1/embeddings", "/v1/embeddings", {"model": "Embedder", "input": ["a", "b"]}),
    ("protocols", "POST", "/v1/embeddings", "/v1/embeddings", {"model": "Embedder", "input": "a", "dimensions": 9}),
    ("protocols", "POST", "/v1/embeddings", "/v1/embeddings", {"model": "Nope", "input": "a"}),
    ("protocols", "POST", "/v1/embeddings", "/v1/embeddings", {"model": "Embedder", "input": ["a"] * 11}),
    ("protocols", "GET", "/v2", "/v2", None),
    ("protocols", "GET", "/v2/health/live", "/v2/health/live", None),
    ("protocols", "GET", "/v2/health/ready", "/v2/health/ready", None),
    ("protocols", "GET", "/v2/models/Kinds", "/v2/models/Kinds", None),
    ("protocols", "GET", "/v2/models/Unmappable", "/v2/models/Unmappable", None),
    ("protocols", "GET", "/v2/models/Kinds/versions/{version}", "/v2/models/Kinds/versions/7", None),
    ("protocols", "GET", "/v2/models/Kinds/ready", "/v2/models/Kinds/ready", None),
    (
        "protocols",
        "POST",
        "/v2/models/Scalar/infer",
        "/v2/models/Scalar/infer",
        {"id": "1", "inputs": [{"name": "x", "datatype": "FP64", "shape": [2], "data": [1, 2]}]},
    ),
    ("protocols", "POST", "/v2/models/Scalar/infer", "/v2/models/Scalar/infer", {"inputs": []}),
    ("protocols", "POST", "/v2/models/Unmappable/infer", "/v2/models/Unmappable/infer", {"inputs": []}),
    ("ok", "GET", "/v2/models/FailingSetup/ready", "/v2/models/FailingSetup/ready", None),
    ("ok", "GET", "/v2/health/ready", "/v2/health/ready", None),
]


@pytest.fixture(scope="module")
def live_apps() -> dict[str, Flask]:
    from serving.app import create_app
    from serving.config.settings import Settings

    apps = {
        "batch": create_app(
            Settings(handlers_dir=BATCH_HANDLERS, default_model="Batched", predict_max_instances=10, **VERTEX)
        ),
        "ok": create_app(Settings(handlers_dir=FIXTURE_HANDLERS / "ok", default_model="FailingSetup", **VERTEX)),
        "protocols": create_app(Settings(handlers_dir=FIXTURE_HANDLERS / "protocols", predict_max_instances=10)),
    }
    return apps


@pytest.mark.parametrize(
    ("app_name", "method", "doc_path", "url", "body"),
    LIVE_REQUESTS,
    ids=[f"{a}-{m}-{u}-{i}" for i, (a, m, _, u, _) in enumerate(LIVE_REQUESTS)],
)
def test_live_responses_match_the_document(
    live_apps: dict[str, Flask], app_name: str, method: str, doc_path: str, url: str, body: Any
) -> None:
    app = live_apps[app_name]
    document = _document(app)

    response = app.test_client().open(url, method=method, json=body)

    validator = _validator(document, _response_schema_pointer(document, doc_path, method.lower(), response.status_code))
    errors = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(response.get_json())]
    assert not errors, f"{method} {url} -> {response.status_code} {response.get_json()}"


def test_docs_page_is_documented_as_html(make_app: Callable[..., Flask]) -> None:
    document = _document(make_app(model_loading="lazy"))

    assert "text/html" in document["paths"]["/docs"]["get"]["responses"]["200"]["content"]
