"""The OpenAPI 3.1 document of the running app, generated from its registry and settings.

`GET /openapi.json` serves `build_document(app)`. Each group of routes describes itself in
a function beside its routes, taking an `OpenApiDocument` (serving/openapi/builder.py) and
the app's `ServingState`; `ROUTE_GROUPS` lists them in the order they appear: every wire
protocol's (`PROTOCOLS`, serving/protocols/), then the server's own. A new protocol adds
its group to its `WireProtocol`; another new group of routes adds one entry here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify

from serving.http.health_openapi import health_routes
from serving.http.state import ServingState, get_state
from serving.http.web_openapi import web_routes
from serving.jobs.openapi import job_routes
from serving.observability.metrics_openapi import metrics_routes
from serving.openapi.builder import BATCH_ERROR_SCHEMA, ERROR_SCHEMA, MODEL_STATUS_SCHEMA, OpenApiDocument
from serving.openapi.security import document_security
from serving.protocols import PROTOCOLS
from serving.security.access import public

blueprint = Blueprint("openapi", __name__)

RouteGroup = Callable[[OpenApiDocument, ServingState], None]


def document_routes(doc: OpenApiDocument, state: ServingState) -> None:
    """`GET /openapi.json` (this document) and `GET /docs` (the page that shows it)."""
    doc.add_tag("discovery", "What is served here and how to call it.")
    doc.add_operation(
        "/openapi.json",
        "get",
        {
            "tags": ["discovery"],
            "operationId": "openapi_document",
            "summary": "This document",
            "responses": {"200": doc.json_response("The OpenAPI 3.1 document.", {"type": "object"})},
        },
    )
    doc.add_operation(
        "/docs",
        "get",
        {
            "tags": ["discovery"],
            "operationId": "api_docs",
            "summary": "Interactive API documentation (Swagger UI)",
            "responses": {
                "200": {"description": "An HTML page.", "content": {"text/html": {"schema": {"type": "string"}}}}
            },
        },
    )


# Each group describes its routes; a new group of routes (not a protocol's) adds its function here.
ROUTE_GROUPS: tuple[RouteGroup, ...] = (
    *(protocol.openapi for protocol in PROTOCOLS if protocol.openapi is not None),
    document_routes,
    health_routes,
    metrics_routes,
    job_routes,
    web_routes,
)


def build_document(app: Flask) -> dict[str, Any]:
    """The OpenAPI 3.1 document describing every route `app` serves."""
    state = get_state(app)
    names = ", ".join(runtime.spec.name for runtime in state.registry) or "none"
    doc = OpenApiDocument(
        "model-serving",
        f'Models served here: {names}. `POST /v1/<Model>` takes one input and answers `{{"result": ...}}`; '
        '`POST /v1/models/<Model>:predict` takes `{"instances": [...]}` and answers `{"predictions": [...]}`. '
        "Every error is JSON with `message` and `code`.",
    )
    doc.add_schema("Error", ERROR_SCHEMA)
    doc.add_schema("BatchError", BATCH_ERROR_SCHEMA)
    doc.add_schema("ModelStatus", MODEL_STATUS_SCHEMA)
    for group in ROUTE_GROUPS:
        group(doc, state)
    document = doc.to_dict()
    document_security(document, app)
    return document


@blueprint.get("/openapi.json")
@public
def openapi_json() -> Response:
    return jsonify(build_document(current_app))
