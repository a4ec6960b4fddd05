"""The `instances` / `predictions` wire format: TensorFlow Serving REST, KServe v1, Vertex AI.

Two protocols speak it (serving/protocols/tfserving/ and vertex/), so it sits beside
them rather than in either: `predict_instances` answers the current request.

A request is `{"instances": [...], "parameters": {...}?, "signature_name": ...?}`;
each instance is one payload of the model's INPUT_SCHEMA. This module turns such a body
into the list of payloads, or raises a 4xx naming the JSON path of what is wrong.

Binary values: TF Serving and Vertex AI clients send binary data as `{"b64": "<base64>"}`.
Handlers take binary input as base64 text (Digits' `image` field, say), so an object whose
only key is `b64` is replaced by its base64 string, wherever it appears in an instance,
before the instance is validated. The text is checked to be base64 (standard or
URL-safe alphabet, padding optional, line breaks ignored) and handed on in the standard
alphabet with padding, so the handler decodes it with `base64.b64decode`.

Not supported: TF Serving's columnar `{"inputs": ...}` form (its answer, `outputs`, would
need the model's output to be named tensors); it gets a 400 saying to send `instances`.

The request fails as a whole, as TF Serving's does: an invalid instance is a 400 naming
its index and JSON path before any model code runs, and an instance the model rejects
(or fails on) fails the request with that instance's status, index and message. Clients
retry a whole request, so a partial answer would only hide which predictions are missing.
Errors carry `error` (what TF Serving clients read) beside `message`: `error_body`.

"Batch" in this server means request batching (serving/runtime/batching.py); only the
names clients already know keep it here: the messages' "batch request", and the OpenAPI
schemas `<Model>.BatchRequest` and `BatchError`.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping
from typing import Any

from flask import Response, jsonify, request

from serving.errors import ApiError, BadRequest, TooManyInstances, ValidationFailed
from serving.http.body import read_json
from serving.http.error_handlers import standard_error_body
from serving.http.state import get_state
from serving.runtime.positional import PositionalOrder, refusal
from serving.runtime.registry import ModelRuntime
from serving.runtime.request_scope import check
from serving.runtime.rows import row_outcomes
from serving.runtime.validation import SchemaValidator, json_path

# TF Serving's name for the one signature a model has when it was not named.
DEFAULT_SIGNATURE = "serving_default"
REQUEST_KEYS = ("instances", "parameters", "signature_name")
# An invalid request lists at most this many invalid instances; the first is the message.
MAX_REPORTED_ERRORS = 20

_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_URLSAFE_TO_STANDARD = str.maketrans("-_", "+/")
_WHITESPACE = re.compile(r"\s")


class UnsupportedFormat(BadRequest):
    code = "unsupported_format"


def parse_instances_request(body: Any, *, model: str, max_instances: int) -> list[Any]:
    """The instances of a request body, with `{"b64": ...}` values replaced.

    Raises `ValidationFailed` (400) for a body of the wrong shape, `UnsupportedFormat` (400)
    for the columnar `inputs` form and `TooManyInstances` (413) above `max_instances`.
    """
    if not isinstance(body, dict):
        raise ValidationFailed(
            'A batch request is a JSON object: {"instances": [...]}, one instance per prediction', path="$"
        )
    if "inputs" in body:
        raise UnsupportedFormat(
            "The columnar 'inputs' format is not supported: send the same data row by row as "
            '{"instances": [...]}, one object per prediction',
            path="$.inputs",
        )
    unknown = [key for key in body if key not in REQUEST_KEYS]
    if unknown:
        raise ValidationFailed(
            f"Unknown key {unknown[0]!r}: a batch request has 'instances' and optionally 'parameters'",
            path=json_path("$", unknown[0]),
        )
    if "instances" not in body:
        raise ValidationFailed("'instances' is a required property", path="$")
    instances = body["instances"]
    if not isinstance(instances, list):
        raise ValidationFailed("'instances' must be an array, one instance per prediction", path="$.instances")
    if len(instances) > max_instances:
        raise TooManyInstances(
            f"{len(instances)} instances in one request; at most {max_instances} are accepted "
            "(PREDICT_MAX_INSTANCES): split the request",
            limit=max_instances,
        )
    _check_parameters(body.get("parameters"), model)
    signature = body.get("signature_name")
    if signature not in (None, DEFAULT_SIGNATURE):
        raise ValidationFailed(
            f"Model {model} has one signature, {DEFAULT_SIGNATURE!r}; got {signature!r}",
            path="$.signature_name",
        )
    replaced = []
    for index, instance in enumerate(instances):
        try:
            replaced.append(_replace_b64(instance, json_path("$.instances", index)))
        except ValidationFailed as error:
            error.message = f"instances[{index}]: {error.message}"
            error.details["index"] = index
            raise
    return replaced


def _check_parameters(parameters: Any, model: str) -> None:
    # Handlers take one payload and no options, so a parameter could only be ignored; a
    # client that sends one expects it to change the result, so refuse it instead.
    if parameters is None:
        return
    if not isinstance(parameters, dict):
        raise ValidationFailed("'parameters' must be an object", path="$.parameters")
    if parameters:
        name = next(iter(parameters))
        raise ValidationFailed(
            f"Model {model} takes no parameters; got {name!r}: put per-prediction values in each instance",
            path=json_path("$.parameters", name),
        )


def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and "b64" in value


def _standard_base64(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise ValidationFailed(f"'b64' must be a base64 string, not {type(value).__name__}", path=path)
    # MIME base64 breaks lines every 76 characters; the line breaks carry no data.
    text = "".join(value.split()) if _WHITESPACE.search(value) else value
    text = text.translate(_URLSAFE_TO_STANDARD)
    if "=" not in text:
        text += "=" * (-len(text) % 4)
    if len(text) % 4 or not _BASE64.fullmatch(text):
        raise ValidationFailed("'b64' is not valid base64", path=path)
    return text


def _replace_b64(instance: Any, path: str) -> Any:
    """`instance` with every `{"b64": s}` object replaced by the base64 string `s`."""
    if _is_b64(instance):
        return _standard_base64(instance["b64"], json_path(path, "b64"))
    # An explicit stack rather than recursion: a deeply nested instance must not raise
    # RecursionError (a 500) before validation has looked at it.
    stack: list[tuple[Any, str]] = [(instance, path)] if isinstance(instance, (dict, list)) else []
    while stack:
        container, where = stack.pop()
        items: Any = container.items() if isinstance(container, Mapping) else enumerate(container)
        for key, value in list(items):
            if _is_b64(value):
                container[key] = _standard_base64(value["b64"], json_path(json_path(where, key), "b64"))
            elif isinstance(value, (dict, list)):
                stack.append((value, json_path(where, key)))
    return instance


def positional_instances(instances: list[Any], schema: Mapping[str, Any], model: str) -> list[Any]:
    """`instances` with each list of values (Vertex AI's `instanceType: "array"`) as an object.

    The values map to the object schema's top-level properties in declared order
    (serving/runtime/positional.py); a model whose schema is not an object takes its
    lists as they are, and one with no flat order to map to refuses them.
    """
    if schema.get("type") != "object" or not any(isinstance(instance, list) for instance in instances):
        return instances
    order = PositionalOrder.of(schema)
    mapped = []
    for index, instance in enumerate(instances):
        if isinstance(instance, list):
            where = json_path("$.instances", index)
            try:
                if order is None:
                    raise refusal(model, where=where)
                instance = order.payload(instance, where=where)
            except ValidationFailed as failed:
                failed.message = f"instances[{index}]: {failed.message}"
                failed.details["index"] = index
                raise
        mapped.append(instance)
    return mapped


def validate_instances(validator: SchemaValidator, instances: list[Any]) -> None:
    """Raise `ValidationFailed` naming the first invalid instance's index and JSON path.

    Every instance is checked; the error's `errors` lists up to `MAX_REPORTED_ERRORS`
    invalid ones (`index`, `path`, `message`) so a client can fix them all at once.
    """
    errors: list[dict[str, Any]] = []
    for index, instance in enumerate(instances):
        check()  # a long validation stops once the request's budget is spent
        found = validator.first_error(instance)
        if found is not None:
            message, path = found
            errors.append({"index": index, "path": json_path("$.instances", index) + path[1:], "message": message})
            if len(errors) >= MAX_REPORTED_ERRORS:
                break
    if errors:
        first = errors[0]
        raise ValidationFailed(
            f"instances[{first['index']}]: {first['message']}", path=first["path"], index=first["index"], errors=errors
        )


def predict_instances(runtime: ModelRuntime) -> Response:
    """Answer the current request's `{"instances": [...]}` with `{"predictions": [...]}`."""
    state = get_state()
    instances = parse_instances_request(
        read_json(request), model=runtime.spec.name, max_instances=state.settings.predict_max_instances
    )
    # Vertex AI batch prediction's `instanceType: "array"` sends value lists.
    instances = positional_instances(instances, runtime.spec.input_schema, runtime.spec.name)
    validate_instances(runtime.spec.input_validator, instances)
    return jsonify(predictions=run_instances(runtime, instances))


def run_instances(runtime: ModelRuntime, instances: list[Any]) -> list[Any]:
    """Every instance's prediction, in chunks of the handler's `max_batch_size`.

    Raises the first failing instance's `ApiError`, its message prefixed with
    `instances[i]` and with `index`, `path` and (when several failed) `errors`.
    """
    size = runtime.spec.batch.max_batch_size
    predictions: list[Any] = []
    failures: list[tuple[int, ApiError]] = []
    with contextlib.closing(row_outcomes(get_state().inference, runtime, instances)) as outcomes:
        for index, outcome in outcomes:
            if isinstance(outcome, ApiError):
                failures.append((index, outcome))
            else:
                predictions.append(outcome)
            if failures and (index + 1) % size == 0:
                break  # the request fails whole: later chunks would only cost model time
    if failures:
        raise _instance_error(failures)
    return predictions


def _instance_error(failures: list[tuple[int, ApiError]]) -> ApiError:
    index, error = failures[0]
    if len(failures) > 1:
        error.details["errors"] = [
            {"index": i, "code": e.code, "message": e.message} for i, e in failures[:MAX_REPORTED_ERRORS]
        ]
    error.message = f"instances[{index}]: {error.message}"
    error.details.setdefault("path", f"$.instances[{index}]")
    error.details["index"] = index
    return error


def error_body(error: ApiError) -> dict[str, Any]:
    """The standard error body with `error` beside `message`: what TF Serving's clients read."""
    body = standard_error_body(error)
    body.setdefault("error", error.message)
    return body
