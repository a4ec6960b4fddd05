"""The OpenAPI description of the model routes (predict.py, batch.py): predicting, and listing models."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from serving.http.instances import DEFAULT_SIGNATURE
from serving.http.state import ServingState
from serving.http.uploads_openapi import describe_uploads
from serving.runtime.registry import ModelRuntime

if TYPE_CHECKING:
    from serving.openapi.builder import OpenApiDocument


MODEL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "description": {"type": "string"},
        "version": {"type": "string"},
        "status": {"$ref": "#/components/schemas/ModelStatus"},
        "ready": {"type": "boolean"},
        "reason": {"type": "string", "description": "Why the model is not ready, when it is not."},
        "async": {"type": "string", "enum": ["never", "allowed", "always"]},
        "batch": {"type": "boolean", "description": "Whether the handler predicts many inputs in one call."},
        "input_schema": {"type": "object", "description": "JSON Schema of one input."},
        "output_schema": {"type": ["object", "null"], "description": "JSON Schema of one result, if declared."},
        "artifacts": {
            "type": "object",
            "description": "Where the model's files come from, when it has any (docs/artifacts.md).",
            "properties": {
                "uri": {"type": "string", "description": "`gs://bucket/prefix/`, `gs://bucket/object` or a path."},
                "digest": {
                    "type": ["string", "null"],
                    "description": "sha256 (hex) of the objects' names and generations; null until loaded.",
                },
            },
            "required": ["uri", "digest"],
        },
    },
    "required": ["name", "description", "version", "status", "ready", "input_schema"],
}


def input_examples(runtime: ModelRuntime) -> list[Any]:
    """The `examples` of a handler's INPUT_SCHEMA (the request examples of its operations)."""
    examples = runtime.spec.input_schema.get("examples")
    return list(examples) if isinstance(examples, list) else []


def _batch_request_schema(input_ref: Mapping[str, Any], max_instances: int) -> dict[str, Any]:
    return {
        "type": "object",
        "description": 'TF Serving / KServe v1 / Vertex AI row format. A `{"b64": "..."}` object stands for '
        "its base64 string wherever it appears in an instance.",
        "properties": {
            # No maxItems: more than the limit is a 413, which a schema cannot say.
            "instances": {
                "type": "array",
                "items": dict(input_ref),
                "description": f"One input per prediction; at most {max_instances} (PREDICT_MAX_INSTANCES), else 413.",
            },
            "parameters": {
                "type": ["object", "null"],
                "maxProperties": 0,
                "description": "Accepted for compatibility; models take no parameters, so it must be empty.",
            },
            "signature_name": {"enum": [DEFAULT_SIGNATURE, None]},
        },
        "required": ["instances"],
        "additionalProperties": False,
    }


def model_routes(doc: OpenApiDocument, state: ServingState) -> None:
    """`POST /v1/<Model>` and its batch forms, for every model in the registry."""
    max_instances = state.settings.predict_max_instances
    for runtime in state.registry:
        spec = runtime.spec
        name = spec.name
        doc.add_tag(name, spec.description or f"Model {name}")
        input_ref = doc.add_schema(
            f"{name}.Input", doc.embed_schema(spec.input_schema, f"/components/schemas/{name}.Input")
        )
        output_schema = spec.output_schema if spec.output_schema is not None else {}
        output_ref = doc.add_schema(
            f"{name}.Output", doc.embed_schema(output_schema, f"/components/schemas/{name}.Output")
        )
        result_ref = doc.add_schema(
            f"{name}.Result",
            {
                "type": "object",
                "properties": {"result": output_ref},
                "required": ["result"],
                "additionalProperties": False,
            },
        )
        batch_ref = doc.add_schema(f"{name}.BatchRequest", _batch_request_schema(input_ref, max_instances))
        predictions_ref = doc.add_schema(
            f"{name}.Predictions",
            {
                "type": "object",
                "properties": {"predictions": {"type": "array", "items": output_ref}},
                "required": ["predictions"],
                "additionalProperties": False,
            },
        )
        examples = input_examples(runtime)
        doc.add_operation(
            f"/v1/{name}",
            "post",
            {
                "tags": [name],
                "operationId": f"predict_{name}",
                "summary": f"Predict with {name}",
                "description": spec.description,
                "requestBody": doc.json_request_body(input_ref, examples),
                "responses": {
                    "200": doc.json_response("The model's result.", result_ref),
                    **doc.error_responses(400, 413, 500, 503),
                },
            },
        )
        # The same input as a form, or as a raw body where it is one file (docs/uploads.md).
        describe_uploads(doc.paths[f"/v1/{name}"]["post"], doc.schemas[f"{name}.Input"])
        batch_examples = [{"instances": examples}] if examples else []
        batch_responses = {
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
                "requestBody": doc.json_request_body(batch_ref, batch_examples),
                "responses": batch_responses,
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
                        "description": f"Must be the served version, {spec.version!r}; any other is a 404.",
                        "schema": {"type": "string", "examples": [spec.version]},
                    }
                ],
                "requestBody": doc.json_request_body(batch_ref, batch_examples),
                "responses": {**batch_responses, **doc.error_responses(404, schema="BatchError")},
            },
        )


def listing_routes(doc: OpenApiDocument, state: ServingState) -> None:
    """`GET /v1/models` and `GET /v1/models/{name}`."""
    doc.add_tag("discovery", "What is served here and how to call it.")
    model_ref = doc.add_schema("Model", MODEL_SCHEMA)
    list_ref = doc.add_schema(
        "ModelList",
        {"type": "object", "properties": {"models": {"type": "array", "items": model_ref}}, "required": ["models"]},
    )
    doc.add_operation(
        "/v1/models",
        "get",
        {
            "tags": ["discovery"],
            "operationId": "list_models",
            "summary": "Every model, with its state and schemas",
            "responses": {"200": doc.json_response("The models served here.", list_ref)},
        },
    )
    names = [runtime.spec.name for runtime in state.registry]
    doc.add_operation(
        "/v1/models/{name}",
        "get",
        {
            "tags": ["discovery"],
            "operationId": "describe_model",
            "summary": "One model, with its state and schemas (also KServe v1's model readiness)",
            "parameters": [
                {
                    "name": "name",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "examples": names[:1]} if names else {"type": "string"},
                }
            ],
            "responses": {"200": doc.json_response("The model.", model_ref), **doc.error_responses(404)},
        },
    )
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
