"""The OpenAPI description of `GET /metrics` (metrics.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from serving.http.state import ServingState
    from serving.openapi.builder import OpenApiDocument


def metrics_routes(doc: OpenApiDocument, state: ServingState) -> None:
    """`GET /metrics`, when metrics are on."""
    if not state.settings.metrics:
        return
    doc.add_tag("observability", "Prometheus metrics.")
    text = {"schema": {"type": "string"}}
    doc.add_operation(
        "/metrics",
        "get",
        {
            "tags": ["observability"],
            "operationId": "metrics",
            "summary": "Prometheus metrics of this instance, merged over its gunicorn workers",
            "responses": {
                "200": {
                    "description": "Prometheus text exposition (OpenMetrics when the Accept header asks for it).",
                    "content": {"text/plain": text, "application/openmetrics-text": text},
                }
            },
        },
    )
