"""The OpenAPI description of the demo page (web.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from serving.http.state import ServingState

if TYPE_CHECKING:
    from serving.openapi.builder import OpenApiDocument


def web_routes(doc: OpenApiDocument, state: ServingState) -> None:
    """`GET /`: the demo page with every model's widget."""
    doc.add_operation(
        "/",
        "get",
        {
            "tags": ["discovery"],
            "operationId": "demo_page",
            "summary": "Demo page: a widget for every model and the snippet to embed it",
            "responses": {
                "200": {"description": "An HTML page.", "content": {"text/html": {"schema": {"type": "string"}}}}
            },
        },
    )
