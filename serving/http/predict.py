"""The model routes: `POST /v1/<Name>` and the model listing.

`POST /v1/<Name>` with a JSON body answers `{"result": ...}`, exactly as the tutorial's
Flask-RESTful resource did: `400 {"message": "No JSON object"}` without a JSON body, and
jsonschema's message (e.g. `'name' is a required property`) for an invalid one.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, g, jsonify, request
from werkzeug.routing import BaseConverter

from serving.errors import ModelNotFound
from serving.http.payload import read_input
from serving.http.state import get_state
from serving.jobs.routes import idempotency_key, submit, wants_async
from serving.runtime.registry import NAME_PATTERN, RESERVED_NAMES, ModelRuntime
from serving.security.access import authorize_model, may_use_model

blueprint = Blueprint("api", __name__, url_prefix="/v1")


class ModelNameConverter(BaseConverter):
    """`<model:name>` in a route: only what a handler's NAME may be.

    So `GET /v1/models/Iris:predict` is not taken for a model called `Iris:predict`, and
    `POST /v1/models` is a 405 (with an `Allow` that does not list POST) rather than a
    search for a model called `models`.
    """

    # The reserved names are excluded in the pattern itself: Werkzeug computes a 405's
    # `Allow` from the patterns alone, before any converter code runs.
    regex = (
        r"(?!(?i:"
        + "|".join(sorted(RESERVED_NAMES))
        + r")(?![A-Za-z0-9_.-]))"
        + NAME_PATTERN.pattern.removeprefix("^").removesuffix("$")
    )


def find_model(name: str) -> ModelRuntime:
    """The model called `name`, or `ModelNotFound` (404); 403 when the API key may not use it."""
    runtime = get_state().registry.get(name)
    if runtime is None:
        shown = name if len(name) <= 64 else name[:61] + "..."
        raise ModelNotFound(f"No model named {shown!r}; GET /v1/models lists the models served here")
    g.model = runtime.spec.name
    authorize_model(runtime.spec.name)
    return runtime


def read_payload(runtime: ModelRuntime) -> Any:
    """The request's input (JSON, form or raw body), validated against the model's input schema."""
    payload = read_input(request, runtime.spec.input_schema)
    runtime.spec.input_validator.validate(payload)
    return payload


@blueprint.post("/<model:name>")
def predict(name: str) -> Response:
    runtime = find_model(name)
    payload = read_payload(runtime)
    if runtime.spec.async_mode != "never":
        idempotency_key()  # documented for such models: malformed is a 400 even when answered now
    if wants_async(runtime):
        return submit(runtime, payload)
    result = get_state().inference.predict(runtime, payload)
    return jsonify(result=result)


@blueprint.get("/models")
def list_models() -> Response:
    usable = (runtime for runtime in get_state().registry if may_use_model(runtime.spec.name))
    return jsonify(models=[runtime.describe() for runtime in usable])


@blueprint.get("/models/<model:name>")
def describe_model(name: str) -> Response:
    return jsonify(find_model(name).describe())
