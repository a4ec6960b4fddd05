"""The OpenAPI description of the Open Inference Protocol (KServe v2) routes.

Registered in `serving/openapi/document.py`'s `ROUTE_GROUPS`. Each model's routes are
described under its own paths, with its tensor names as enums; the binary tensor data
extension (a JSON part, then raw tensors) is in the descriptions, since OpenAPI cannot
describe such a body.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from serving.http.state import ServingState
from serving.protocols.oip.tensors import signature
from serving.protocols.oip.wire import DATATYPES, HEADER_LENGTH

if TYPE_CHECKING:
    from serving.openapi.builder import OpenApiDocument

TAG = "open-inference"

INFERENCE_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "An error on /v2: the protocol's `error` beside our `message` and `code`.",
    "properties": {
        "error": {"type": "string", "description": "What went wrong (the same text as `message`)."},
        "message": {"type": "string"},
        "code": {"type": "string"},
        "request_id": {"type": "string"},
    },
    "required": ["error", "message", "code"],
}

TENSOR_METADATA_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "datatype": {"enum": list(DATATYPES)},
        "shape": {"type": "array", "items": {"type": "integer"}, "description": "-1: any size (the batch first)."},
    },
    "required": ["name", "datatype", "shape"],
}

_STATUSES = {
    400: "Invalid request: tensors that do not fit the model's inputs (each message names the tensor), a row "
    "the model's schema or the model refuses, or a model whose schemas map to no tensors.",
    404: "No such model, or not this version.",
    413: "Request body over `MAX_REQUEST_BYTES`, or more rows than `PREDICT_MAX_INSTANCES`.",
    415: "A compressed (`Content-Encoding`) body.",
    500: "The model failed, or its result does not fit its output tensors; the traceback is logged.",
    503: "The model cannot serve: still loading (with `Retry-After`), failed to load, or unavailable.",
}


def _infer_request(inputs: list[str], outputs: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "description": f"JSON tensors. With the binary tensor data extension, the JSON part is followed by raw "
        f"tensors: `{HEADER_LENGTH}` gives its length, `parameters.binary_data_size` each input's bytes.",
        "properties": {
            "id": {"type": "string", "description": "Echoed in the answer."},
            "parameters": {
                "type": "object",
                "description": "`binary_data_output: true` asks for every output as binary data.",
            },
            "inputs": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "properties": {
                        "name": {"enum": inputs} if inputs else {"type": "string"},
                        "datatype": {"enum": list(DATATYPES)},
                        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 1},
                        "data": {"type": "array", "description": "Row-major; nested arrays are flattened."},
                        "parameters": {"type": "object"},
                    },
                    "required": ["name", "datatype", "shape"],
                },
            },
            "outputs": {
                "type": "array",
                "description": "Which outputs to answer with (default all); `parameters.binary_data` per output.",
                "items": {
                    "type": "object",
                    "properties": {
                        "name": {"enum": outputs} if outputs else {"type": "string"},
                        "parameters": {"type": "object"},
                    },
                    "required": ["name"],
                },
            },
        },
        "required": ["inputs"],
    }


_INFER_RESPONSE: dict[str, Any] = {
    "type": "object",
    "properties": {
        "model_name": {"type": "string"},
        "model_version": {"type": "string"},
        "id": {"type": "string"},
        "outputs": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "datatype": {"enum": list(DATATYPES)},
                    "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
                    "data": {"type": "array"},
                    "parameters": {"type": "object"},
                },
                "required": ["name", "datatype", "shape"],
            },
        },
    },
    "required": ["model_name", "model_version", "outputs"],
}


def _version_parameter(version: str) -> dict[str, Any]:
    return {
        "name": "version",
        "in": "path",
        "required": True,
        "description": f"Must be the served version, {version!r} (or with its artifacts' digest, as "
        "`X-Model-Version` shows it); any other is a 404.",
        "schema": {"type": "string", "examples": [version]},
    }


def oip_routes(doc: OpenApiDocument, state: ServingState) -> None:
    """`/v2` health and metadata, and every model's metadata, readiness and infer."""
    json_request_body, json_response = doc.json_request_body, doc.json_response

    doc.add_tag(TAG, "The Open Inference Protocol (KServe v2), as Triton, KServe and MLServer clients speak it.")
    error_ref = doc.add_schema("InferenceError", INFERENCE_ERROR_SCHEMA)
    tensor_ref = doc.add_schema("TensorMetadata", TENSOR_METADATA_SCHEMA)
    response_ref = doc.add_schema("InferResponse", _INFER_RESPONSE)

    def errors(*statuses: int) -> dict[str, Any]:
        return {str(status): json_response(_STATUSES[status], error_ref) for status in statuses}

    def operation(operation_id: str, summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
        return {"tags": [TAG], "operationId": operation_id, "summary": summary, "responses": responses, **extra}

    flag = {"type": "object", "properties": {"live": {"type": "boolean"}}, "required": ["live"]}
    doc.add_operation("/v2/health/live", "get", operation("v2_live", "Liveness", {"200": json_response("Live.", flag)}))
    ready = {
        "type": "object",
        "properties": {"ready": {"type": "boolean"}, "error": {"type": "string"}},
        "required": ["ready"],
    }
    doc.add_operation(
        "/v2/health/ready",
        "get",
        operation(
            "v2_ready",
            "Readiness: every model whose packages are installed has loaded",
            {"200": json_response("Ready.", ready), "503": json_response("Not ready (`/readyz` says why).", ready)},
        ),
    )
    server = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "version": {"type": "string"},
            "extensions": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["name", "version", "extensions"],
    }
    doc.add_operation(
        "/v2", "get", operation("v2_server_metadata", "Server metadata", {"200": json_response("", server)})
    )

    metadata = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "versions": {"type": "array", "items": {"type": "string"}},
            "platform": {"type": "string"},
            "inputs": {"type": "array", "items": tensor_ref},
            "outputs": {"type": "array", "items": tensor_ref},
            "unmappable": {"type": "string", "description": "Why this model's schemas map to no tensors."},
        },
        "required": ["name", "versions", "platform", "inputs", "outputs"],
    }
    model_ready = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "ready": {"const": True}},
        "required": ["name", "ready"],
    }
    for runtime in state.registry:
        name, version = runtime.spec.name, runtime.spec.version
        tensors = signature(runtime.spec.input_schema, runtime.spec.output_schema)
        infer_body = json_request_body(
            _infer_request([t.name for t in tensors.inputs], [t.name for t in tensors.outputs])
        )
        infer_responses = {
            "200": json_response(
                f"The outputs; raw tensors follow the JSON when `{HEADER_LENGTH}` is set.", response_ref
            ),
            **errors(400, 413, 415, 500, 503),
        }
        infer_responses["200"]["content"]["application/octet-stream"] = {"schema": {"type": "string"}}
        for prefix, suffix, parameters in (
            (f"/v2/models/{name}", "", []),
            (f"/v2/models/{name}/versions/{{version}}", "_version", [_version_parameter(version)]),
        ):
            extra: dict[str, Any] = {"parameters": parameters} if parameters else {}
            not_found = errors(404) if parameters else {}
            doc.add_operation(
                prefix,
                "get",
                operation(
                    f"v2_metadata{suffix}_{name}",
                    f"{name}'s tensors",
                    {"200": json_response("The model's metadata.", metadata), **not_found},
                    **extra,
                ),
            )
            doc.add_operation(
                f"{prefix}/ready",
                "get",
                operation(
                    f"v2_model_ready{suffix}_{name}",
                    f"Whether {name} serves (loading it first when loading is lazy)",
                    {"200": json_response("Ready.", model_ready), **not_found, **errors(503)},
                    **extra,
                ),
            )
            doc.add_operation(
                f"{prefix}/infer",
                "post",
                operation(
                    f"v2_infer{suffix}_{name}",
                    f"Infer with {name}: one payload per batch row",
                    {**infer_responses, **not_found},
                    requestBody=infer_body,
                    **extra,
                ),
            )
