"""The OpenAPI 3.1 document builder: `OpenApiDocument` and the parts every operation shares.

Each group of routes describes itself beside its routes (e.g. serving/protocols/native/openapi.py)
in a function taking an `OpenApiDocument` and the app's `ServingState`; the document gives
it everything it needs to write operations (`json_response`, `error_responses`,
`json_request_body`, `ref`, `embed_schema`), so a route group depends on nothing here but
the document it is handed. serving/openapi/document.py lists the groups and serves the
result.

Every operation lists every status it can answer with its body schema, so a fuzzer such as
schemathesis can check the live responses against the document. Handler schemas are JSON
Schema draft 2020-12, which is OpenAPI 3.1's own dialect, so they are embedded as they are
(under `components/schemas/<Model>.Input` and `.Output`), with their local `$ref`s
re-rooted to where they now live.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

OPENAPI_VERSION = "3.1.0"
API_VERSION = "1"
JSON = "application/json"

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
        return self.ref(name)

    def add_tag(self, name: str, description: str) -> None:
        """Declare a tag (a group of operations in the docs page), once."""
        if name not in self._tags:
            self._tags.add(name)
            self._doc["tags"].append({"name": name, "description": description})

    def add_operation(self, path: str, method: str, operation: dict[str, Any]) -> None:
        """Add one operation; `method` is an HTTP method, any case."""
        self.paths.setdefault(path, {})[method.lower()] = operation

    @staticmethod
    def ref(name: str) -> dict[str, str]:
        """A `$ref` to the component schema called `name`."""
        return {"$ref": f"#/components/schemas/{name}"}

    @staticmethod
    def embed_schema(schema: Mapping[str, Any], pointer: str) -> dict[str, Any]:
        """A copy of a handler's `schema` fit to live at `pointer` (see `embed_schema`)."""
        return embed_schema(schema, pointer)

    # --- the parts of an operation ---

    @staticmethod
    def json_response(description: str, schema: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
        """A response object with a JSON body of `schema` (and the `X-Request-Id` header)."""
        return {
            "description": description,
            "headers": {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}},
            "content": {JSON: {"schema": dict(schema)}},
            **extra,
        }

    def error_responses(self, *statuses: int, schema: str = "Error") -> dict[str, Any]:
        """Response objects for error `statuses`, each with the `schema` error body."""
        responses = {str(status): self.json_response(STATUS_TEXT[status], self.ref(schema)) for status in statuses}
        if "503" in responses:
            responses["503"]["headers"]["Retry-After"] = {"$ref": "#/components/headers/RetryAfter"}
        return responses

    @staticmethod
    def json_request_body(schema: Mapping[str, Any], examples: Iterable[Any] = ()) -> dict[str, Any]:
        """A required JSON request body of `schema`, with named examples."""
        media: dict[str, Any] = {"schema": dict(schema)}
        listed = list(examples)
        if listed:
            media["examples"] = {f"example{i + 1}": {"value": value} for i, value in enumerate(listed)}
        return {"required": True, "content": {JSON: media}}

    def to_dict(self) -> dict[str, Any]:
        """The document, ready to serialise."""
        return self._doc
