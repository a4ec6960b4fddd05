"""The native routes: `POST /v1/<Name>` and the model listing.

`POST /v1/<Name>` with a JSON body answers `{"result": ...}`, exactly as the tutorial's
Flask-RESTful resource did: `400 {"message": "No JSON object"}` without a JSON body, and
jsonschema's message (e.g. `'name' is a required property`) for an invalid one. It may
also take a form or a raw file (serving/http/payload.py), and run as a job
(dispatch.py). `GET /v1/models` lists the models, with OpenAI's keys beside ours.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Request, Response, jsonify, request

from serving.http.model_route import find_model
from serving.http.payload import read_input
from serving.http.state import get_state
from serving.observability.prediction_log import logs_predictions
from serving.protocols.native.dispatch import job_request
from serving.protocols.native.listing import openai_model
from serving.runtime.registry import ModelRuntime
from serving.security.access import may_use_model

blueprint = Blueprint("native", __name__, url_prefix="/v1")

# Not models: the listing (`/v1/models`), and the jobs that `POST /v1/<Name>` may become
# (`/v1/jobs/<id>`, served by serving/jobs/ in this protocol's URL space).
RESERVED_NAMES = frozenset({"models", "jobs"})


def read_payload(runtime: ModelRuntime) -> Any:
    """The request's input (JSON, form or raw body), validated against the model's input schema."""
    # The request itself, not its proxy: the body is read through several of its attributes.
    req: Request = request._get_current_object()  # type: ignore[attr-defined]
    payload = read_input(req, runtime.spec.input_schema)
    runtime.spec.input_validator.validate(payload)
    return payload


@blueprint.post("/<model:name>")
@logs_predictions
def predict(name: str) -> Response:
    runtime = find_model(name)
    state = get_state()
    # Announced to the model's batcher before the body is read, so that a batch about to
    # run may wait for this request; withdrawn on the way out if it never got there.
    with state.inference.arriving(runtime) as arrival:
        payload = read_payload(runtime)
        job = job_request(runtime, jobs_enabled=state.jobs_enabled)
        if job is not None:
            return state.schedule_job(runtime, payload, idempotency_key=job.idempotency_key, preferred=job.preferred)
        result = state.inference.predict(runtime, payload, arrival=arrival)
    return jsonify(result=result)


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
