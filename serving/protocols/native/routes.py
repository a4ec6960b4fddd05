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
from serving.http.dispatch import job_request
from serving.http.openai_models import openai_model
from serving.http.payload import read_input
from serving.http.state import get_state
from serving.observability.logs import tag_model
from serving.runtime.handlers import NAME_PATTERN, RESERVED_NAMES
from serving.runtime.inference import Arrival
from serving.runtime.registry import ModelRuntime
from serving.security.access import authorize_model, may_use_model

blueprint = Blueprint("api", __name__, url_prefix="/v1")

# Where `announce_prediction` keeps the request's `Arrival` for the view and the teardown.
_ARRIVAL = "_serving_arrival"


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
    tag_model(runtime.spec.name)
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
    state = get_state()
    job = job_request(runtime, jobs_enabled=state.jobs_enabled)
    if job is not None:
        return state.schedule_job(runtime, payload, idempotency_key=job.idempotency_key, preferred=job.preferred)
    result = state.inference.predict(runtime, payload, arrival=g.get(_ARRIVAL))
    return jsonify(result=result)


def announce_prediction() -> None:
    """Before the view: tell the model's batcher a `POST /v1/<Name>` is on its way.

    Its body is still to be read, parsed and validated, so a batch about to run may wait
    for it (serving/runtime/batching.py). Does nothing for other routes, and when the
    model does not batch.
    """
    if request.endpoint != "api.predict" or not request.view_args:
        return
    state = get_state()
    runtime = state.registry.get(request.view_args.get("name", ""))
    if runtime is not None:
        arrival = state.inference.announce(runtime)
        if arrival is not None:
            setattr(g, _ARRIVAL, arrival)


def withdraw_prediction(_exc: BaseException | None) -> None:
    """At teardown: an announced request that never reached the model is withdrawn."""
    arrival: Arrival | None = g.pop(_ARRIVAL, None)
    if arrival is not None:
        arrival.withdraw()


@blueprint.get("/models")
def list_models() -> Response:
    usable = [runtime for runtime in get_state().registry if may_use_model(runtime.spec.name)]
    # `object` and `data` are OpenAI's list of models (`client.models.list()`).
    return jsonify(
        models=[runtime.describe() for runtime in usable],
        object="list",
        data=[openai_model(runtime) for runtime in usable],
    )


@blueprint.get("/models/<model:name>")
def describe_model(name: str) -> Response:
    runtime = find_model(name)
    return jsonify({**openai_model(runtime), **runtime.describe()})
