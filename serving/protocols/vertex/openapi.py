"""The OpenAPI description of Vertex AI's custom container routes (routes.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from serving.protocols.instances_openapi import instances_schemas
from serving.protocols.vertex.routes import default_model

if TYPE_CHECKING:
    from serving.http.state import ServingState
    from serving.openapi.builder import OpenApiDocument


def vertex_routes(doc: OpenApiDocument, state: ServingState) -> None:
    """Vertex AI's health and predict routes, when `AIP_*_ROUTE` are set."""
    settings = state.settings
    runtime = default_model(settings, state.registry)
    if settings.aip_health_route is None or settings.aip_predict_route is None or runtime is None:
        return
    name = runtime.spec.name
    doc.add_tag("vertex-ai", f"Vertex AI custom container routes, serving {name}.")
    examples = runtime.spec.input_examples
    request_ref, predictions_ref = instances_schemas(doc, runtime, settings.predict_max_instances)
    doc.add_operation(
        settings.aip_health_route,
        "get",
        {
            "tags": ["vertex-ai"],
            "operationId": "vertex_health",
            "summary": f"200 only when {name} is ready",
            "responses": {
                "200": doc.json_response(
                    "Ready.",
                    {
                        "type": "object",
                        "properties": {"status": {"const": "ready"}, "model": {"const": name}},
                        "required": ["status", "model"],
                    },
                ),
                **doc.error_responses(503),
            },
        },
    )
    doc.add_operation(
        settings.aip_predict_route,
        "post",
        {
            "tags": ["vertex-ai"],
            "operationId": "vertex_predict",
            "summary": f"Predict many with {name}",
            "requestBody": doc.json_request_body(request_ref, [{"instances": examples}] if examples else []),
            "responses": {
                "200": doc.json_response("One prediction per instance, in order.", predictions_ref),
                **doc.error_responses(400, 413, 500, 503, schema="BatchError"),
            },
        },
    )
