"""Batch prediction in the format TF Serving, KServe v1 and Vertex AI clients speak.

`POST /v1/models/<Name>:predict` with `{"instances": [...]}` answers
`{"predictions": [...]}`, one prediction per instance, in order. The versioned form
`POST /v1/models/<Name>/versions/<VERSION>:predict` serves the same model when
`<VERSION>` is its `VERSION`.

The request fails as a whole, as TF Serving's does: an invalid instance is a 400 naming
its index and JSON path before any model code runs, and an instance the model rejects
(or fails on) fails the request with that instance's status, index and message. Clients
retry a whole request, so a partial answer would only hide which predictions are missing.
Every error on these routes carries `error` (what TF Serving clients read) beside
`message`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, g, jsonify, request

from serving.errors import ApiError, ModelNotFound
from serving.http.body import read_json
from serving.http.instances import MAX_REPORTED_ERRORS, parse_batch_request, positional_instances, validate_instances
from serving.http.predict import find_model
from serving.http.state import get_state
from serving.runtime.registry import ModelRuntime

blueprint = Blueprint("batch_api", __name__, url_prefix="/v1/models")

_PREDICT_PATH = re.compile(r"/v1/models/[^/]+(/versions/[^/]+)?:predict")


@blueprint.post("/<model:name>:predict")
def predict(name: str) -> Response:
    return predict_instances(find_model(name))


@blueprint.post("/<model:name>/versions/<version>:predict")
def predict_version(name: str, version: str) -> Response:
    runtime = find_model(name)
    # The handler's VERSION, or the served version with its artifacts' digest (X-Model-Version).
    if version not in (runtime.spec.version, runtime.version):
        raise ModelNotFound(f"Model {runtime.spec.name} serves version {runtime.spec.version!r}, not {version[:64]!r}")
    return predict_instances(runtime)


def predict_instances(runtime: ModelRuntime) -> Response:
    """Answer the current request's `{"instances": [...]}` with `{"predictions": [...]}`."""
    state = get_state()
    instances = parse_batch_request(
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
    inference = get_state().inference
    size = runtime.spec.batch.max_batch_size
    predictions: list[Any] = []
    for start in range(0, len(instances), size):
        outcomes = inference.predict_many(runtime, instances[start : start + size])
        failures = [(start + offset, o) for offset, o in enumerate(outcomes) if isinstance(o, ApiError)]
        if failures:
            # The request fails whole: later chunks would only cost model time.
            raise _instance_error(failures)
        predictions.extend(outcomes)
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


# Set on `g` by `tf_serving_marker` for the request; read only by `speaks_tf_serving`.
_TF_SERVING = "_batch_tf_serving"


def tf_serving_marker(vertex_predict_route: str | None) -> Callable[[], None]:
    """Before-request step: mark requests to the batch routes and Vertex AI's predict route.

    Their errors then carry `error` beside `message` (see `speaks_tf_serving`). A request
    hook rather than a blueprint one: 404s and 405s of these URLs are decided before any
    blueprint code runs, and they must carry `error` as well. Errors raised by the steps
    before this one (401, 429) are not marked.
    """

    def _mark() -> None:
        path = request.path
        if _PREDICT_PATH.fullmatch(path) or path == vertex_predict_route:
            setattr(g, _TF_SERVING, True)

    return _mark


def speaks_tf_serving() -> bool:
    """True when the current request was marked as TF Serving's: its errors carry `error` too."""
    return bool(g.get(_TF_SERVING))
