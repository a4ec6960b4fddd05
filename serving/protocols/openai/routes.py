"""OpenAI's embeddings API: `POST /v1/embeddings`, for every model that declares EMBEDDINGS.

The request is `{"model": "<Name>", "input": "text" | ["text", ...], "encoding_format":
"float" | "base64", "dimensions": n, "user": "..."}`; the answer `{"object": "list",
"data": [{"object": "embedding", "index": i, "embedding": ...}], "model": "<Name>",
"usage": {"prompt_tokens": n, "total_tokens": n}}`. `base64` is the little-endian float32
bytes of the vector, which is what the official clients ask for by default.

The texts run through the model's batched path (`predict_many`, chunked by the handler's
`max_batch_size`), each checked against the model's INPUT_SCHEMA first; at most
`PREDICT_MAX_INSTANCES` texts per request (413 beyond). Every error on this route, of any
status (401s and 404s included), takes OpenAI's shape `{"error": {"message", "type",
"param", "code"}}`, because that is what OpenAI's clients parse.
"""

from __future__ import annotations

import base64
import logging
from typing import Any

import numpy as np
from flask import Blueprint, Response, jsonify, request

from serving.errors import ApiError, InternalError, ModelNotFound, TooManyInstances, ValidationFailed
from serving.http.body import read_json
from serving.http.error_handlers import standard_error_body
from serving.http.model_route import find_model
from serving.http.state import get_state
from serving.runtime.embeddings import EmbeddingsSpec
from serving.runtime.registry import ModelRuntime
from serving.runtime.rows import RowFailed, predict_rows

log = logging.getLogger("serving.protocols.openai")

blueprint = Blueprint("openai", __name__, url_prefix="/v1/embeddings")
# `POST /v1/embeddings` is not a model called "embeddings".
RESERVED_NAMES = frozenset({"embeddings"})
ENCODING_FORMATS = ("float", "base64")
REQUEST_KEYS = ("model", "input", "encoding_format", "dimensions", "user")
# OpenAI's error `type` for each status; any other 4xx is an invalid request.
_ERROR_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
}


def _invalid(message: str, param: str | None, code: str = "invalid_value") -> ValidationFailed:
    error = ValidationFailed(message, param=param)
    error.code = code
    return error


def _texts(value: Any) -> list[str]:
    """The request's `input` as a list of texts; a 400 for token arrays or anything else."""
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not value:
        raise _invalid("'input' must be a string or a non-empty array of strings", "input")
    if all(isinstance(item, str) for item in value):
        return value
    tokens = all(isinstance(item, int) and not isinstance(item, bool) for item in value) or all(
        isinstance(item, list) for item in value
    )
    if tokens:
        raise _invalid(
            "Token arrays are not supported as 'input': send the text, which the model tokenizes itself",
            "input",
            "unsupported_input",
        )
    index = next(i for i, item in enumerate(value) if not isinstance(item, str))
    raise _invalid(f"input[{index}] must be a string, not {type(value[index]).__name__}", "input")


def _read_request() -> tuple[dict[str, Any], list[str]]:
    body = read_json(request)
    if not isinstance(body, dict):
        raise _invalid('The request body must be a JSON object: {"model": ..., "input": ...}', None)
    # Optional arguments sent as null (some clients do) mean "not given".
    body = {key: value for key, value in body.items() if value is not None or key in ("model", "input")}
    unknown = [key for key in body if key not in REQUEST_KEYS]
    if unknown:
        raise _invalid(f"Unrecognized request argument supplied: {unknown[0][:64]}", unknown[0][:64])
    for key in ("model", "input"):
        if key not in body:
            raise _invalid(f"'{key}' is a required property", key, "missing_required_parameter")
    if not isinstance(body["model"], str):
        raise _invalid("'model' must be a string: the name of a model served here", "model")
    if body.get("encoding_format", "float") not in ENCODING_FORMATS:
        raise _invalid("'encoding_format' must be 'float' or 'base64'", "encoding_format")
    if "user" in body and not isinstance(body["user"], str):
        raise _invalid("'user' must be a string", "user")
    return body, _texts(body["input"])


def _embedding_model(name: str) -> tuple[ModelRuntime, EmbeddingsSpec]:
    registry = get_state().registry
    if registry.get(name) is None:
        shown = name if len(name) <= 64 else name[:61] + "..."
        raise ModelNotFound(f"The model {shown!r} does not exist; GET /v1/models lists the models served here")
    runtime = find_model(name)  # 403 when the API key may not use it
    spec = runtime.spec.embeddings
    if spec is None:
        served = ", ".join(r.spec.name for r in registry if r.spec.embeddings is not None) or "none"
        message = f"Model {name} does not produce embeddings (embedding models here: {served})"
        raise _invalid(message, "model", "model_not_supported")
    return runtime, spec


def _check_dimensions(value: Any, spec: EmbeddingsSpec, model: str) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _invalid("'dimensions' must be a positive integer", "dimensions")
    if value != spec.dimensions:
        # Cutting a vector short is only meaningful for Matryoshka-trained models.
        given = f"{spec.dimensions}-dimensional embeddings only" if spec.dimensions else "no fixed dimension"
        raise _invalid(
            f"Model {model} gives {given}; it cannot give {value} dimensions", "dimensions", "unsupported_dimensions"
        )


def _token_counts(runtime: ModelRuntime, spec: EmbeddingsSpec, texts: list[str]) -> list[int]:
    model = get_state().inference.model_for(runtime)
    try:
        counts = spec.count_tokens(model, texts)
    except Exception:
        log.exception("count_tokens failed", extra={"model": runtime.spec.name})
        raise InternalError("count_tokens failed; quote the request id when reporting it") from None
    valid = isinstance(counts, list) and len(counts) == len(texts)
    if not valid or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in counts):
        raise InternalError("count_tokens returned no count per text; quote the request id when reporting it")
    return counts


def encode(vector: list[float], encoding_format: str) -> list[float] | str:
    """The vector as floats, or as base64 of its little-endian float32 bytes."""
    if encoding_format == "base64":
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")
    return vector


@blueprint.post("")
def embeddings() -> Response:
    body, texts = _read_request()
    runtime, spec = _embedding_model(body["model"])
    _check_dimensions(body.get("dimensions"), spec, runtime.spec.name)
    limit = get_state().settings.predict_max_instances
    if len(texts) > limit:
        raise TooManyInstances(
            f"{len(texts)} inputs in one request; at most {limit} are accepted (PREDICT_MAX_INSTANCES): split the "
            "request",
            param="input",
            limit=limit,
        )
    payloads = [spec.payload(text) for text in texts]
    for index, payload in enumerate(payloads):
        found = runtime.spec.input_validator.first_error(payload)
        if found is not None:
            raise _invalid(f"input[{index}]: {found[0]}", "input", "invalid_input")
    try:
        results = predict_rows(get_state().inference, runtime, payloads)
    except RowFailed as failed:
        failed.error.message = f"input[{failed.index}]: {failed.error.message}"
        failed.error.details["param"] = "input"
        raise failed.error from None
    counts = _token_counts(runtime, spec, texts)
    encoding_format = body.get("encoding_format", "float")
    try:
        vectors = [spec.vector(result) for result in results]
    except TypeError:
        raise InternalError("The model returned no embedding; quote the request id when reporting it") from None
    return jsonify(
        object="list",
        data=[
            {"object": "embedding", "index": i, "embedding": encode(vector, encoding_format)}
            for i, vector in enumerate(vectors)
        ],
        model=runtime.spec.name,
        usage={"prompt_tokens": sum(counts), "total_tokens": sum(counts)},
    )


def error_body(error: ApiError) -> dict[str, Any]:
    """`{"error": {"message", "type", "param", "code"}, "request_id"}`: OpenAI's shape, which its clients parse."""
    body = standard_error_body(error)
    status = error.status
    error_type = _ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    shaped: dict[str, Any] = {
        "error": {
            "message": body.get("message", "Error"),
            "type": error_type,
            "param": body.get("param"),
            "code": body.get("code"),
        }
    }
    if "request_id" in body:
        shaped["request_id"] = body["request_id"]
    return shaped
