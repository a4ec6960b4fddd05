"""The OpenAPI description of `POST /v1/embeddings`.

Every error status of the route is described with OpenAI's error shape, 401/403/429/504
included: the security pass adds those with our usual error shape, but only to
operations that do not describe them yet, so this module describes them first, under the
same conditions (keys on, a key that may be scoped, rate limits on). OpenAI's keys in the
model list are the native listing's (serving/protocols/native/openapi.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from serving.runtime.embeddings import EmbeddingsSpec

if TYPE_CHECKING:
    from serving.http.state import ServingState
    from serving.openapi.builder import OpenApiDocument

TAG = "openai"

OPENAI_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "OpenAI's error shape, which OpenAI's clients parse.",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string", "examples": ["invalid_request_error"]},
                "param": {"type": ["string", "null"], "description": "The request property at fault, if one is."},
                "code": {"type": ["string", "null"], "examples": ["model_not_found"]},
            },
            "required": ["message", "type", "param", "code"],
        },
        "request_id": {"type": "string"},
    },
    "required": ["error"],
}

_STATUSES = {
    400: "Invalid request: unknown or missing argument, token arrays, an input the model's schema refuses, "
    "a model that gives no embeddings, or `dimensions` other than the model's.",
    401: "No API key, or not a valid one.",
    403: "This API key may not use this model.",
    404: "No such model.",
    413: "Request body over `MAX_REQUEST_BYTES`, or more inputs than `PREDICT_MAX_INSTANCES`.",
    429: "Over this client's rate limit.",
    500: "The model failed; the body holds only a request id, the traceback is logged.",
    503: "The model cannot serve: still loading (with `Retry-After`), failed to load, or unavailable.",
    504: "The model did not answer within its time budget.",
}


def _text_schema(models: list[tuple[str, EmbeddingsSpec, Any]]) -> dict[str, Any]:
    """One text: the model's own schema for it when one model serves embeddings."""
    if len(models) == 1:
        _, spec, input_schema = models[0]
        text = dict(input_schema["properties"][spec.input])
        text.pop("examples", None)
        return text
    return {"type": "string"}


def openai_routes(doc: OpenApiDocument, state: ServingState) -> None:
    """`POST /v1/embeddings`."""
    json_request_body, json_response = doc.json_request_body, doc.json_response
    settings = state.settings
    statuses = [400, 404, 413, 500, 503, 504]
    if settings.api_keys or settings.api_keys_secret:
        statuses.append(401)
        if settings.api_keys_secret or any(key.models is not None for key in settings.api_keys):
            statuses.append(403)
    if settings.rate_limits:
        statuses.append(429)
    models = [
        (runtime.spec.name, runtime.spec.embeddings, runtime.spec.input_schema)
        for runtime in state.registry
        if runtime.spec.embeddings is not None
    ]
    limit = state.settings.predict_max_instances
    text = _text_schema(models)
    names = [name for name, _, _ in models]
    request_schema = {
        "type": "object",
        "properties": {
            "model": {"enum": names} if names else {"type": "string"},
            "input": {
                "description": f"One text, or up to {limit} (PREDICT_MAX_INSTANCES). Token arrays are refused.",
                "oneOf": [text, {"type": "array", "items": text, "minItems": 1, "maxItems": limit}],
            },
            "encoding_format": {
                "enum": ["float", "base64", None],
                "default": "float",
                "description": "`base64`: the little-endian float32 bytes of each vector.",
            },
            "dimensions": {
                "type": ["integer", "null"],
                "minimum": 1,
                "description": "Only the model's own dimension (a model not trained for shorter vectors "
                "cannot give them).",
            },
            "user": {"type": ["string", "null"], "description": "Accepted and ignored."},
        },
        "description": "An optional argument sent as null counts as not sent.",
        "required": ["model", "input"],
        "additionalProperties": False,
    }
    answer = {
        "type": "object",
        "properties": {
            "object": {"const": "list"},
            "data": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "object": {"const": "embedding"},
                        "index": {"type": "integer", "minimum": 0},
                        "embedding": {"oneOf": [{"type": "array", "items": {"type": "number"}}, {"type": "string"}]},
                    },
                    "required": ["object", "index", "embedding"],
                },
            },
            "model": {"type": "string"},
            "usage": {
                "type": "object",
                "properties": {
                    "prompt_tokens": {"type": "integer", "minimum": 0},
                    "total_tokens": {"type": "integer", "minimum": 0},
                },
                "required": ["prompt_tokens", "total_tokens"],
            },
        },
        "required": ["object", "data", "model", "usage"],
    }
    doc.add_tag(TAG, "OpenAI-compatible embeddings, for OpenAI's clients, LangChain, LlamaIndex and friends.")
    error_ref = doc.add_schema("OpenAIError", OPENAI_ERROR_SCHEMA)
    examples = [{"model": name, "input": ["A man is playing a guitar.", "A cat sleeps."]} for name in names[:1]]
    doc.add_operation(
        "/v1/embeddings",
        "post",
        {
            "tags": [TAG],
            "operationId": "create_embeddings",
            "summary": "Embed texts (OpenAI's embeddings API)",
            "description": f"Served for every model that declares EMBEDDINGS: {', '.join(names) or 'none here'}.",
            "requestBody": json_request_body(request_schema, examples),
            "responses": {
                "200": json_response("One embedding per input, in order, and the tokens read.", answer),
                **{str(status): json_response(_STATUSES[status], error_ref) for status in sorted(statuses)},
            },
        },
    )
