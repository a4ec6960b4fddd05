"""The OpenAPI description of TF Serving's predict routes (routes.py), for every model."""

from __future__ import annotations

from typing import TYPE_CHECKING

from serving.protocols.instances_openapi import instances_schemas

if TYPE_CHECKING:
    from serving.http.state import ServingState
    from serving.openapi.builder import OpenApiDocument


def tfserving_routes(doc: OpenApiDocument, state: ServingState) -> None:
    """`POST /v1/models/<Model>:predict` and its versioned form, for every model in the registry."""
    max_instances = state.settings.predict_max_instances
    for runtime in state.registry:
        spec = runtime.spec
        name = spec.name
        request_ref, predictions_ref = instances_schemas(doc, runtime, max_instances)
        examples = spec.input_examples
        request_examples = [{"instances": examples}] if examples else []
        responses = {
            "200": doc.json_response("One prediction per instance, in order.", predictions_ref),
            **doc.error_responses(400, 413, 500, 503, schema="BatchError"),
        }
        doc.add_operation(
            f"/v1/models/{name}:predict",
            "post",
            {
                "tags": [name],
                "operationId": f"predict_instances_{name}",
                "summary": f"Predict many with {name} (TF Serving, KServe v1, Vertex AI format)",
                "description": "The whole request fails when one instance is invalid or fails; the error names "
                "its `index` and JSON `path`.",
                "requestBody": doc.json_request_body(request_ref, request_examples),
                "responses": responses,
            },
        )
        doc.add_operation(
            f"/v1/models/{name}/versions/{{version}}:predict",
            "post",
            {
                "tags": [name],
                "operationId": f"predict_instances_version_{name}",
                "summary": f"Predict many with {name}, naming the version (TF Serving's URL form)",
                "parameters": [
                    {
                        "name": "version",
                        "in": "path",
                        "required": True,
                        "description": f"Must be the served version, {spec.version!r} (or with its artifacts' "
                        "digest, as `X-Model-Version` shows it); any other is a 404.",
                        "schema": {"type": "string", "examples": [spec.version]},
                    }
                ],
                "requestBody": doc.json_request_body(request_ref, request_examples),
                "responses": {**responses, **doc.error_responses(404, schema="BatchError")},
            },
        )
