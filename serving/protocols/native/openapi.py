"""The OpenAPI description of the native routes: `POST /v1/<Model>`, and the model listing with OpenAI's keys."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from serving.http.state import ServingState
from serving.http.uploads_openapi import describe_uploads

if TYPE_CHECKING:
    from serving.openapi.builder import OpenApiDocument


# OpenAI's `Model` object, which the listing carries beside its own keys (listing.py).
OPENAI_MODEL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "object": {"const": "model"},
        "created": {"type": "integer", "description": "The handler file's modification time (Unix seconds)."},
        "owned_by": {"type": "string"},
    },
    "required": ["id", "object", "created", "owned_by"],
}

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


def native_routes(doc: OpenApiDocument, state: ServingState) -> None:
    """`POST /v1/<Model>` for every model in the registry, and the model listing."""
    _model_routes(doc, state)
    _listing_routes(doc, state)


def _model_routes(doc: OpenApiDocument, state: ServingState) -> None:
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
        examples = spec.input_examples
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


def _listing_routes(doc: OpenApiDocument, state: ServingState) -> None:
    """`GET /v1/models` and `GET /v1/models/{name}`, with OpenAI's keys beside ours."""
    doc.add_tag("discovery", "What is served here and how to call it.")
    openai_model_ref = doc.add_schema("OpenAIModel", OPENAI_MODEL_SCHEMA)
    model_ref = doc.add_schema(
        "Model",
        {
            **MODEL_SCHEMA,
            "properties": {
                **MODEL_SCHEMA["properties"],
                **{key: OPENAI_MODEL_SCHEMA["properties"][key] for key in ("id", "object")},
            },
        },
    )
    list_ref = doc.add_schema(
        "ModelList",
        {
            "type": "object",
            "properties": {
                "models": {"type": "array", "items": model_ref},
                "object": {"const": "list"},
                "data": {"type": "array", "items": openai_model_ref, "description": "OpenAI's model list."},
            },
            "required": ["models"],
        },
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
