"""The Open Inference Protocol (KServe v2) over REST, as Triton, KServe and MLServer speak it.

- `GET /v2/health/live`, `GET /v2/health/ready` (503 until every model has loaded, like
  `/readyz`), `GET /v2` (server metadata): public, like the other probes.
- `GET /v2/models/<Name>[/versions/<v>]`: the model's tensors (see `tensors.py` for how
  its schemas map to them).
- `GET /v2/models/<Name>[/versions/<v>]/ready`: loads the model when loading is lazy; 200
  when it serves, 503 saying why not.
- `POST /v2/models/<Name>[/versions/<v>]/infer`: one payload per batch row, run through
  the model's batched path; JSON or binary tensor data (`wire.py`).

Errors carry `error` (what the protocol and tritonclient read) beside our `message` and
`code`, for every status on `/v2` paths, including 404s and 405s of unknown URLs
(`error_body`). A `<v>` is the version served, in either form `find_model` accepts. The
protocol's text says "a 4xx status" for a health check that is false; 503 is what
KServe's server answers, what load balancers expect and what `/readyz` answers, and
clients only compare with 200.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, jsonify, request

from serving.errors import (
    ApiError,
    InternalError,
    ModelNotServing,
    TooManyInstances,
    UnsupportedMediaType,
    ValidationFailed,
)
from serving.http.body import read_body
from serving.http.error_handlers import standard_error_body
from serving.http.model_route import find_model
from serving.http.state import get_state
from serving.protocols.oip.tensors import (
    ACCEPTED,
    OutputMismatch,
    Signature,
    TensorError,
    output_values,
    payloads,
    signature,
)
from serving.protocols.oip.wire import HEADER_LENGTH, OutputTensor, encode_infer_response, parse_infer_request
from serving.runtime.registry import ModelRuntime, ModelStatus
from serving.runtime.rows import RowFailed, predict_rows
from serving.security.access import public

log = logging.getLogger("serving.protocols.oip")

blueprint = Blueprint("oip", __name__, url_prefix="/v2")

SERVER_NAME = "model-serving"
PLATFORM = "model-serving"
EXTENSIONS = ["binary_tensor_data"]


def error_body(error: ApiError) -> dict[str, Any]:
    """The standard error body with the protocol's `error` beside `message`."""
    body = standard_error_body(error)
    body.setdefault("error", error.message)
    return body


@blueprint.get("/health/live")
@public
def live() -> Response:
    return jsonify(live=True)


@blueprint.get("/health/ready")
@public
def ready() -> tuple[Response, int]:
    is_ready = get_state().registry.ready()
    body: dict[str, Any] = {"ready": is_ready}
    if not is_ready:
        body["error"] = "Not ready: some models have not loaded (GET /readyz says which)"
    return jsonify(body), 200 if is_ready else 503


@blueprint.get("")
@public
def server_metadata() -> Response:
    return jsonify(name=SERVER_NAME, version="1", extensions=EXTENSIONS)


def _signature(runtime: ModelRuntime) -> Signature:
    return signature(runtime.spec.input_schema, runtime.spec.output_schema)


@blueprint.get("/models/<model:name>")
@blueprint.get("/models/<model:name>/versions/<version>")
def model_metadata(name: str, version: str | None = None) -> Response:
    runtime = find_model(name, version)
    tensors = _signature(runtime)
    body: dict[str, Any] = {
        "name": runtime.spec.name,
        "versions": [runtime.spec.version],
        "platform": PLATFORM,
        "inputs": [spec.metadata() for spec in tensors.inputs],
        "outputs": [spec.metadata() for spec in tensors.outputs],
    }
    if tensors.problem is not None:
        body["unmappable"] = tensors.problem
    return jsonify(body)


@blueprint.get("/models/<model:name>/ready")
@blueprint.get("/models/<model:name>/versions/<version>/ready")
def model_ready(name: str, version: str | None = None) -> tuple[Response, int]:
    runtime = find_model(name, version)
    try:
        get_state().inference.model_for(runtime)  # loads it first when MODEL_LOADING=lazy
    except ModelNotServing as error:
        error.details["ready"] = False
        error.details["name"] = runtime.spec.name
        raise
    return jsonify(name=runtime.spec.name, ready=runtime.status is ModelStatus.READY), 200


@blueprint.post("/models/<model:name>/infer")
@blueprint.post("/models/<model:name>/versions/<version>/infer")
def infer(name: str, version: str | None = None) -> Response:
    runtime = find_model(name, version)
    model = runtime.spec.name
    tensors = _signature(runtime)
    if tensors.problem is not None:
        raise ValidationFailed(f"Model {model} cannot be served over the Open Inference Protocol: {tensors.problem}")
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding != "identity":
        raise UnsupportedMediaType(f"Content-Encoding {encoding[:32]!r} is not supported: send the body uncompressed")
    parsed = parse_infer_request(read_body(request), request.headers.get(HEADER_LENGTH))

    specs = {spec.name: spec for spec in tensors.inputs}
    given: dict[str, tuple[list[int], list[Any]]] = {}
    for tensor in parsed.inputs:
        spec = specs.get(tensor.name)
        if spec is None:
            known = ", ".join(specs)
            raise ValidationFailed(f"Model {model} has no input {tensor.name[:64]!r}; its inputs are {known}")
        if tensor.name in given:
            raise ValidationFailed(f"Input {tensor.name!r} is given twice")
        if tensor.datatype not in ACCEPTED[spec.kind]:
            raise ValidationFailed(
                f"Input {tensor.name!r} must be {' or '.join(ACCEPTED[spec.kind])}, not {tensor.datatype}"
            )
        given[tensor.name] = (tensor.shape, tensor.values)
    required = runtime.spec.input_schema.get("required", [])
    missing = [name for name in required if name not in given] if isinstance(required, list) else []
    if missing:
        raise ValidationFailed(f"Model {model} needs input {missing[0]!r}, which the request does not have")
    outputs = {spec.name: spec for spec in tensors.outputs}
    requested = parsed.outputs if parsed.outputs is not None else dict.fromkeys(outputs, parsed.binary_output)
    unknown = [name for name in requested if name not in outputs]
    if unknown:
        raise ValidationFailed(f"Model {model} has no output {unknown[0][:64]!r}; its outputs are {', '.join(outputs)}")

    limit = get_state().settings.predict_max_instances
    rows = max(shape[0] for shape, _ in given.values())
    if rows > limit:
        raise TooManyInstances(
            f"{rows} rows in one request; at most {limit} are accepted (PREDICT_MAX_INSTANCES): split the request",
            limit=limit,
        )
    try:
        rows_payloads = payloads(specs, given)
    except TensorError as exc:
        raise ValidationFailed(str(exc)) from None
    for index, payload in enumerate(rows_payloads):
        found = runtime.spec.input_validator.first_error(payload)
        if found is not None:
            raise ValidationFailed(f"row {index}: {found[0]}", path=found[1], index=index)
    try:
        results = predict_rows(get_state().inference, runtime, rows_payloads)
    except RowFailed as failed:
        failed.error.message = f"row {failed.index}: {failed.error.message}"
        failed.error.details["index"] = failed.index
        raise failed.error from None

    answer = []
    for output_name, binary in requested.items():
        spec = outputs[output_name]
        try:
            shape, values = output_values(spec, results, tensors.result_only)
        except OutputMismatch as exc:
            log.error("result does not fit the output tensors: %s", exc, extra={"model": model})
            raise InternalError("The model's result does not fit its output tensors; quote the request id") from None
        answer.append(OutputTensor(spec.name, spec.datatype, shape, values, binary))
    header: dict[str, Any] = {"model_name": model, "model_version": runtime.spec.version}
    if parsed.request_id is not None:
        header["id"] = parsed.request_id
    body, json_length = encode_infer_response(header, answer)
    if json_length is None:
        return Response(body, mimetype="application/json")
    response = Response(body, mimetype="application/octet-stream")
    response.headers[HEADER_LENGTH] = str(json_length)
    return response
