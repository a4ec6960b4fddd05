"""The OpenAPI description of the health routes (health.py): liveness, readiness, App Engine's warmup."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from serving.http.state import ServingState

if TYPE_CHECKING:
    from serving.openapi.builder import OpenApiDocument


READINESS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "status": {"type": "string", "enum": ["ready", "not_ready"]},
        "models": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "properties": {"status": {"$ref": "#/components/schemas/ModelStatus"}, "reason": {"type": "string"}},
                "required": ["status"],
            },
        },
        "message": {"type": "string"},
    },
    "required": ["status", "models"],
}


def health_routes(doc: OpenApiDocument, state: ServingState) -> None:
    """Liveness, readiness and App Engine's warmup."""
    doc.add_tag("health", "Probes for Cloud Run, App Engine and load balancers.")
    readiness_ref = doc.add_schema("Readiness", READINESS_SCHEMA)
    doc.add_operation(
        "/healthz",
        "get",
        {
            "tags": ["health"],
            "operationId": "healthz",
            "summary": "Liveness: 200 while the process serves requests",
            "responses": {
                "200": doc.json_response(
                    "Alive.",
                    {"type": "object", "properties": {"status": {"const": "ok"}}, "required": ["status"]},
                )
            },
        },
    )
    for path, operation_id, summary in (
        ("/readyz", "readyz", "Readiness: 200 only when every model with its packages installed has loaded"),
        ("/_ah/warmup", "warmup", "App Engine's warmup request: loads every model"),
    ):
        doc.add_operation(
            path,
            "get",
            {
                "tags": ["health"],
                "operationId": operation_id,
                "summary": summary,
                "responses": {
                    "200": doc.json_response("Every model is ready (or unavailable).", readiness_ref),
                    "503": doc.json_response(
                        "Some model has not loaded; each model's state and reason.", readiness_ref
                    ),
                },
            },
        )
