"""The OpenAPI 3.1 document of the running app, generated from its registry and settings.

`GET /openapi.json` serves `build_document(app)`. Each group of routes describes itself in
one function taking an `OpenApiDocument` and the app's `ServingState`; `ROUTE_GROUPS`
lists them in the order they appear. A new group of routes (jobs, say) adds one such
function and one entry to `ROUTE_GROUPS`.

Every operation lists every status it can answer with its body schema, so a fuzzer such as
schemathesis can check the live responses against the document. Handler schemas are JSON
Schema draft 2020-12, which is OpenAPI 3.1's own dialect, so they are embedded as they are
(under `components/schemas/<Model>.Input` and `.Output`), with their local `$ref`s
re-rooted to where they now live.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify

from serving.http.instances import DEFAULT_SIGNATURE
from serving.http.state import ServingState, get_state
from serving.http.vertex import default_model
from serving.openapi.security import document_security
from serving.openapi.uploads import describe_uploads
from serving.runtime.registry import ModelRuntime
from serving.security.access import public

OPENAPI_VERSION = "3.1.0"
API_VERSION = "1"
JSON = "application/json"

blueprint = Blueprint("openapi", __name__)

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Every error, of every status: `message` for people, `code` for programs.",
    "properties": {
        "message": {"type": "string", "description": "What went wrong, in words a caller can act on."},
        "code": {
            "type": "string",
            "description": "Machine-readable kind, e.g. `invalid_input`.",
            "examples": ["invalid_input"],
        },
        "request_id": {"type": "string", "description": "Echoed in `X-Request-Id`; quote it when reporting a 500."},
        "path": {"type": "string", "description": "JSON path of the invalid value, e.g. `$.name`."},
    },
    "required": ["message", "code"],
}

BATCH_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "An error on a batch route: `Error` plus `error`, the key TF Serving clients read.",
    "properties": {
        **ERROR_SCHEMA["properties"],
        "error": {"type": "string", "description": "The same text as `message`."},
        "index": {"type": "integer", "minimum": 0, "description": "Index of the first failing instance."},
        "errors": {
            "type": "array",
            "description": "Every failing instance (up to 20), when more than one failed.",
            "items": {
                "type": "object",
                "properties": {
                    "index": {"type": "integer", "minimum": 0},
                    "path": {"type": "string"},
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                },
                "required": ["index", "message"],
            },
        },
    },
    "required": [*ERROR_SCHEMA["required"], "error"],
}

MODEL_STATUS_SCHEMA: dict[str, Any] = {
    "type": "string",
    "enum": ["pending", "loading", "ready", "failed", "unavailable"],
    "description": "`unavailable`: a required package is missing; `failed`: setup raised (see `reason`).",
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
    },
    "required": ["name", "description", "version", "status", "ready", "input_schema"],
}

READINESS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "status": {"type": "string", "enum": ["ready", "not_ready"]},
        "models": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "properties": {"status": {"$ref": "#/components/schemas/ModelStatus"}, "reason": {"type": "string"}},
                "required": ["status"],
            },
        },
        "message": {"type": "string"},
    },
    "required": ["status", "models"],
}

# Status descriptions shared by every operation that can answer them.
STATUS_TEXT = {
    400: "Bad request: no JSON body, malformed JSON, or input that breaks the schema (see `path`)"
    " or that the model cannot use.",
    404: "No such model (or model version).",
    413: "Request body over `MAX_REQUEST_BYTES`, or more instances than `PREDICT_MAX_INSTANCES`.",
    500: "The model failed on this input; the body holds only a request id, the traceback is logged.",
    503: "The model cannot serve: still loading (with `Retry-After`), failed to load, or unavailable.",
}


# Headers every response carries, and the one a 503 may carry.
RESPONSE_HEADERS: dict[str, Any] = {
    "RequestId": {
        "description": "The request's id: the caller's `X-Request-Id` when it sent a sane one, else a new one.",
        "schema": {"type": "string"},
    },
    "RetryAfter": {
        "description": "Seconds to wait before retrying (sent while the model is still loading).",
        "schema": {"type": "string"},
    },
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def embed_schema(schema: Mapping[str, Any], pointer: str) -> dict[str, Any]:
    """A copy of a handler's `schema` fit to live at JSON pointer `pointer` of the document.

    Local references (`#/$defs/x`, `#`) resolve against the document's root once
    embedded, so they are re-rooted under `pointer`; `$schema` and `$id` are dropped
    because OpenAPI 3.1 documents are draft 2020-12 already.
    """
    embedded = copy.deepcopy(dict(schema))
    embedded.pop("$schema", None)
    embedded.pop("$id", None)
    stack: list[Any] = [embedded]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#"):
                node["$ref"] = "#" + pointer + ref[1:]
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return embedded


class OpenApiDocument:
    """An OpenAPI 3.1 document being built: add schemas and operations, then `to_dict()`."""

    def __init__(self, title: str, description: str) -> None:
        self._doc: dict[str, Any] = {
            "openapi": OPENAPI_VERSION,
            "info": {"title": title, "version": API_VERSION, "description": description},
            "tags": [],
            "paths": {},
            "components": {"schemas": {}, "headers": dict(RESPONSE_HEADERS)},
        }
        self._tags: set[str] = set()

    @property
    def paths(self) -> dict[str, Any]:
        """`paths`, by path and then by lower-case method."""
        paths: dict[str, Any] = self._doc["paths"]
        return paths

    @property
    def schemas(self) -> dict[str, Any]:
        """`components/schemas`, by name."""
        schemas: dict[str, Any] = self._doc["components"]["schemas"]
        return schemas

    def add_schema(self, name: str, schema: Mapping[str, Any]) -> dict[str, str]:
        """Store `schema` as a component called `name`; returns a `$ref` to it."""
        self.schemas[name] = dict(schema)
        return _ref(name)

    def add_tag(self, name: str, description: str) -> None:
        """Declare a tag (a group of operations in the docs page), once."""
        if name not in self._tags:
            self._tags.add(name)
            self._doc["tags"].append({"name": name, "description": description})

    def add_operation(self, path: str, method: str, operation: dict[str, Any]) -> None:
        """Add one operation; `method` is an HTTP method, any case."""
        self.paths.setdefault(path, {})[method.lower()] = operation

    def to_dict(self) -> dict[str, Any]:
        """The document, ready to serialise."""
        return self._doc


def json_response(description: str, schema: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    """A response object with a JSON body of `schema` (and the `X-Request-Id` header)."""
    return {
        "description": description,
        "headers": {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}},
        "content": {JSON: {"schema": dict(schema)}},
        **extra,
    }


def error_responses(*statuses: int, schema: str = "Error") -> dict[str, Any]:
    """Response objects for error `statuses`, each with the `schema` error body."""
    responses = {str(status): json_response(STATUS_TEXT[status], _ref(schema)) for status in statuses}
    if "503" in responses:
        responses["503"]["headers"]["Retry-After"] = {"$ref": "#/components/headers/RetryAfter"}
    return responses


def json_request_body(schema: Mapping[str, Any], examples: Iterable[Any] = ()) -> dict[str, Any]:
    """A required JSON request body of `schema`, with named examples."""
    media: dict[str, Any] = {"schema": dict(schema)}
    listed = list(examples)
    if listed:
        media["examples"] = {f"example{i + 1}": {"value": value} for i, value in enumerate(listed)}
    return {"required": True, "content": {JSON: media}}


def _input_examples(runtime: ModelRuntime) -> list[Any]:
    examples = runtime.spec.input_schema.get("examples")
    return list(examples) if isinstance(examples, list) else []


def _batch_request_schema(input_ref: Mapping[str, Any], max_instances: int) -> dict[str, Any]:
    return {
        "type": "object",
        "description": 'TF Serving / KServe v1 / Vertex AI row format. A `{"b64": "..."}` object stands for '
        "its base64 string wherever it appears in an instance.",
        "properties": {
            # No maxItems: more than the limit is a 413, which a schema cannot say.
            "instances": {
                "type": "array",
                "items": dict(input_ref),
                "description": f"One input per prediction; at most {max_instances} (PREDICT_MAX_INSTANCES), else 413.",
            },
            "parameters": {
                "type": ["object", "null"],
                "maxProperties": 0,
                "description": "Accepted for compatibility; models take no parameters, so it must be empty.",
            },
            "signature_name": {"enum": [DEFAULT_SIGNATURE, None]},
        },
        "required": ["instances"],
        "additionalProperties": False,
    }


def model_routes(doc: OpenApiDocument, state: ServingState) -> None:
    """`POST /v1/<Model>` and its batch forms, for every model in the registry."""
    max_instances = state.settings.predict_max_instances
    for runtime in state.registry:
        spec = runtime.spec
        name = spec.name
        doc.add_tag(name, spec.description or f"Model {name}")
        input_ref = doc.add_schema(
            f"{name}.Input", embed_schema(spec.input_schema, f"/components/schemas/{name}.Input")
        )
        output_schema = spec.output_schema if spec.output_schema is not None else {}
        output_ref = doc.add_schema(f"{name}.Output", embed_schema(output_schema, f"/components/schemas/{name}.Output"))
        result_ref = doc.add_schema(
            f"{name}.Result",
            {
                "type": "object",
                "properties": {"result": output_ref},
                "required": ["result"],
                "additionalProperties": False,
            },
        )
        batch_ref = doc.add_schema(f"{name}.BatchRequest", _batch_request_schema(input_ref, max_instances))
        predictions_ref = doc.add_schema(
            f"{name}.Predictions",
            {
                "type": "object",
                "properties": {"predictions": {"type": "array", "items": output_ref}},
                "required": ["predictions"],
                "additionalProperties": False,
            },
        )
        examples = _input_examples(runtime)
        doc.add_operation(
            f"/v1/{name}",
            "post",
            {
                "tags": [name],
                "operationId": f"predict_{name}",
                "summary": f"Predict with {name}",
                "description": spec.description,
                "requestBody": json_request_body(input_ref, examples),
                "responses": {
                    "200": json_response("The model's result.", result_ref),
                    **error_responses(400, 413, 500, 503),
                },
            },
        )
        describe_uploads(doc.paths[f"/v1/{name}"]["post"], doc.schemas[f"{name}.Input"])
        batch_examples = [{"instances": examples}] if examples else []
        batch_responses = {
            "200": json_response("One prediction per instance, in order.", predictions_ref),
            **error_responses(400, 413, 500, 503, schema="BatchError"),
        }
        doc.add_operation(
            f"/v1/models/{name}:predict",
            "post",
            {
                "tags": [name],
                "operationId": f"predict_instances_{name}",
                "summary": f"Predict many with {name} (TF Serving, KServe v1, Vertex AI format)",
                "description": "The whole request fails when one instance is invalid or fails; the error names "
                "its `index` and JSON `path`.",
                "requestBody": json_request_body(batch_ref, batch_examples),
                "responses": batch_responses,
            },
        )
        doc.add_operation(
            f"/v1/models/{name}/versions/{{version}}:predict",
            "post",
            {
                "tags": [name],
                "operationId": f"predict_instances_version_{name}",
                "summary": f"Predict many with {name}, naming the version (TF Serving's URL form)",
                "parameters": [
                    {
                        "name": "version",
                        "in": "path",
                        "required": True,
                        "description": f"Must be the served version, {spec.version!r}; any other is a 404.",
                        "schema": {"type": "string", "examples": [spec.version]},
                    }
                ],
                "requestBody": json_request_body(batch_ref, batch_examples),
                "responses": {**batch_responses, **error_responses(404, schema="BatchError")},
            },
        )


def listing_routes(doc: OpenApiDocument, state: ServingState) -> None:
    """`GET /v1/models` and `GET /v1/models/{name}`."""
    doc.add_tag("discovery", "What is served here and how to call it.")
    model_ref = doc.add_schema("Model", MODEL_SCHEMA)
    list_ref = doc.add_schema(
        "ModelList",
        {"type": "object", "properties": {"models": {"type": "array", "items": model_ref}}, "required": ["models"]},
    )
    doc.add_operation(
        "/v1/models",
        "get",
        {
            "tags": ["discovery"],
            "operationId": "list_models",
            "summary": "Every model, with its state and schemas",
            "responses": {"200": json_response("The models served here.", list_ref)},
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
            "responses": {"200": json_response("The model.", model_ref), **error_responses(404)},
        },
    )
    doc.add_operation(
        "/openapi.json",
        "get",
        {
            "tags": ["discovery"],
            "operationId": "openapi_document",
            "summary": "This document",
            "responses": {"200": json_response("The OpenAPI 3.1 document.", {"type": "object"})},
        },
    )
    doc.add_operation(
        "/docs",
        "get",
        {
            "tags": ["discovery"],
            "operationId": "api_docs",
            "summary": "Interactive API documentation (Swagger UI)",
            "responses": {
                "200": {"description": "An HTML page.", "content": {"text/html": {"schema": {"type": "string"}}}}
            },
        },
    )


def health_routes(doc: OpenApiDocument, state: ServingState) -> None:
    """Liveness, readiness and App Engine's warmup."""
    doc.add_tag("health", "Probes for Cloud Run, App Engine and load balancers.")
    readiness_ref = doc.add_schema("Readiness", READINESS_SCHEMA)
    doc.add_operation(
        "/healthz",
        "get",
        {
            "tags": ["health"],
            "operationId": "healthz",
            "summary": "Liveness: 200 while the process serves requests",
            "responses": {
                "200": json_response(
                    "Alive.",
                    {"type": "object", "properties": {"status": {"const": "ok"}}, "required": ["status"]},
                )
            },
        },
    )
    for path, operation_id, summary in (
        ("/readyz", "readyz", "Readiness: 200 only when every model with its packages installed has loaded"),
        ("/_ah/warmup", "warmup", "App Engine's warmup request: loads every model"),
    ):
        doc.add_operation(
            path,
            "get",
            {
                "tags": ["health"],
                "operationId": operation_id,
                "summary": summary,
                "responses": {
                    "200": json_response("Every model is ready (or unavailable).", readiness_ref),
                    "503": json_response("Some model has not loaded; each model's state and reason.", readiness_ref),
                },
            },
        )


def vertex_routes(doc: OpenApiDocument, state: ServingState) -> None:
    """Vertex AI's health and predict routes, when `AIP_*_ROUTE` are set."""
    settings = state.settings
    runtime = default_model(settings, state.registry)
    if settings.aip_health_route is None or settings.aip_predict_route is None or runtime is None:
        return
    name = runtime.spec.name
    doc.add_tag("vertex-ai", f"Vertex AI custom container routes, serving {name}.")
    examples = _input_examples(runtime)
    doc.add_operation(
        settings.aip_health_route,
        "get",
        {
            "tags": ["vertex-ai"],
            "operationId": "vertex_health",
            "summary": f"200 only when {name} is ready",
            "responses": {
                "200": json_response(
                    "Ready.",
                    {
                        "type": "object",
                        "properties": {"status": {"const": "ready"}, "model": {"const": name}},
                        "required": ["status", "model"],
                    },
                ),
                **error_responses(503),
            },
        },
    )
    doc.add_operation(
        settings.aip_predict_route,
        "post",
        {
            "tags": ["vertex-ai"],
            "operationId": "vertex_predict",
            "summary": f"Predict many with {name}",
            "requestBody": json_request_body(
                _ref(f"{name}.BatchRequest"), [{"instances": examples}] if examples else []
            ),
            "responses": {
                "200": json_response("One prediction per instance, in order.", _ref(f"{name}.Predictions")),
                **error_responses(400, 413, 500, 503, schema="BatchError"),
            },
        },
    )


def web_routes(doc: OpenApiDocument, state: ServingState) -> None:
    """`GET /`: the demo page with every model's widget."""
    doc.add_operation(
        "/",
        "get",
        {
            "tags": ["discovery"],
            "operationId": "demo_page",
            "summary": "Demo page: a widget for every model and the snippet to embed it",
            "responses": {
                "200": {"description": "An HTML page.", "content": {"text/html": {"schema": {"type": "string"}}}}
            },
        },
    )


def metrics_routes(doc: OpenApiDocument, state: ServingState) -> None:
    """`GET /metrics`, when metrics are on."""
    if not state.settings.metrics:
        return
    doc.add_tag("observability", "Prometheus metrics.")
    text = {"schema": {"type": "string"}}
    doc.add_operation(
        "/metrics",
        "get",
        {
            "tags": ["observability"],
            "operationId": "metrics",
            "summary": "Prometheus metrics of this instance, merged over its gunicorn workers",
            "responses": {
                "200": {
                    "description": "Prometheus text exposition (OpenMetrics when the Accept header asks for it).",
                    "content": {"text/plain": text, "application/openmetrics-text": text},
                }
            },
        },
    )


JOB_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "job_id": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
        "model": {"type": "string"},
        "status": {"type": "string", "enum": ["queued", "running", "succeeded", "failed", "canceled"]},
        "result": {"description": "The model's result, when the job succeeded."},
        "error": {"type": "object", "description": "Why the job failed or was canceled (`code`, `message`)."},
        "created_at": {"type": "string", "format": "date-time"},
        "started_at": {"type": "string", "format": "date-time"},
        "finished_at": {"type": "string", "format": "date-time"},
        "attempts": {"type": "integer", "minimum": 0},
        "webhook": {"type": "object", "properties": {"state": {"type": "string"}, "error": {"type": "string"}}},
    },
    "required": ["job_id", "model", "status", "created_at", "attempts"],
}


def job_routes(doc: OpenApiDocument, state: ServingState) -> None:
    """`GET`/`DELETE /v1/jobs/{job_id}`, and the 202 of models that may run asynchronously."""
    doc.add_tag("jobs", "Asynchronous predictions: submit with `Prefer: respond-async`, then poll.")
    job_ref = doc.add_schema("Job", JOB_SCHEMA)
    accepted_ref = doc.add_schema(
        "JobAccepted",
        {
            "type": "object",
            "properties": {
                "job_id": {"type": "string"},
                "status": {
                    "type": "string",
                    "description": "`queued`; a replayed Idempotency-Key answers the job's current status.",
                    "enum": ["queued", "running", "succeeded", "failed", "canceled"],
                },
                "message": {"const": "Task Scheduled"},
            },
            "required": ["job_id", "status", "message"],
        },
    )
    parameter = {
        "name": "job_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
    }
    unavailable = {"503": json_response("Jobs are off on this server, or the job store is unavailable.", _ref("Error"))}
    doc.add_operation(
        "/v1/jobs/{job_id}",
        "get",
        {
            "tags": ["jobs"],
            "operationId": "get_job",
            "summary": "A job's state, and its result once it has succeeded",
            "parameters": [parameter],
            "responses": {"200": json_response("The job.", job_ref), **error_responses(404), **unavailable},
        },
    )
    doc.add_operation(
        "/v1/jobs/{job_id}",
        "delete",
        {
            "tags": ["jobs"],
            "operationId": "cancel_job",
            "summary": "Cancel a queued or running job",
            "parameters": [parameter],
            "responses": {
                "200": json_response("The canceled job.", job_ref),
                **error_responses(404),
                "409": json_response("The job has already finished.", _ref("Error")),
                **unavailable,
            },
        },
    )
    for runtime in state.registry:
        if runtime.spec.async_mode == "never":
            continue
        operation = doc.paths.get(f"/v1/{runtime.spec.name}", {}).get("post")
        if operation is None:
            continue
        operation.setdefault("parameters", []).extend(
            [
                {
                    "name": "Prefer",
                    "in": "header",
                    "required": False,
                    "description": "`respond-async` runs the request as a job (RFC 7240); other "
                    "preferences are ignored, as RFC 7240 requires.",
                    "schema": {"type": "string", "examples": ["respond-async"]},
                },
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": False,
                    "description": "A retried submit with the same key returns the same job.",
                    "schema": {"type": "string", "pattern": "^[\\x21-\\x7e]{1,255}$"},
                },
            ]
        )
        accepted = json_response("Accepted as a job: poll `Location`.", accepted_ref)
        accepted["headers"]["Location"] = {"description": "`/v1/jobs/<job_id>`.", "schema": {"type": "string"}}
        operation["responses"]["202"] = accepted
        operation["responses"].update(
            {
                "422": json_response("The Idempotency-Key was used for a different request.", _ref("Error")),
                **unavailable,
            }
        )


RouteGroup = Callable[[OpenApiDocument, ServingState], None]
# Each group describes its routes; a new group of routes adds its function here.
ROUTE_GROUPS: tuple[RouteGroup, ...] = (
    model_routes,
    listing_routes,
    health_routes,
    vertex_routes,
    metrics_routes,
    job_routes,
    web_routes,
)


def build_document(app: Flask) -> dict[str, Any]:
    """The OpenAPI 3.1 document describing every route `app` serves."""
    state = get_state(app)
    names = ", ".join(runtime.spec.name for runtime in state.registry) or "none"
    doc = OpenApiDocument(
        "model-serving",
        f'Models served here: {names}. `POST /v1/<Model>` takes one input and answers `{{"result": ...}}`; '
        '`POST /v1/models/<Model>:predict` takes `{"instances": [...]}` and answers `{"predictions": [...]}`. '
        "Every error is JSON with `message` and `code`.",
    )
    doc.add_schema("Error", ERROR_SCHEMA)
    doc.add_schema("BatchError", BATCH_ERROR_SCHEMA)
    doc.add_schema("ModelStatus", MODEL_STATUS_SCHEMA)
    for group in ROUTE_GROUPS:
        group(doc, state)
    document = doc.to_dict()
    document_security(document, app)
    return document


@blueprint.get("/openapi.json")
@public
def openapi_json() -> Response:
    return jsonify(build_document(current_app))
