"""The OpenAPI description of `POST /v1/bigquery/<Model>` (routes.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from serving.http.state import ServingState

if TYPE_CHECKING:
    from serving.openapi.builder import OpenApiDocument

TAG = "bigquery"

REMOTE_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "BigQuery's error shape: BigQuery shows `errorMessage` to the user (under 1 KB).",
    "properties": {"errorMessage": {"type": "string"}},
    "required": ["errorMessage"],
    "additionalProperties": False,
}

_STATUS_TEXT = {
    400: "A bad row (`on_error` = fail: the first one's index and field), a malformed request, or more "
    "rows than this service takes (set `max_batching_rows`). BigQuery does not retry it.",
    401: "No valid Google ID token (`BIGQUERY_INVOKERS` set).",
    403: "The token's service account is not in `BIGQUERY_INVOKERS`.",
    404: "No such model, or the route is off (neither `BIGQUERY_INVOKERS` nor `BIGQUERY_TRUST_FRONT_END`).",
    413: "Request body over `MAX_REQUEST_BYTES`.",
    429: "Too many BigQuery calls at once here: retried by BigQuery after `Retry-After`.",
    500: "The model crashed on a row; the message names the request id. BigQuery retries it.",
    503: "The model is still loading (`Retry-After`) or cannot serve. BigQuery retries it.",
    504: "The model did not answer within its time budget. BigQuery retries it.",
}


def bigquery_routes(doc: OpenApiDocument, state: ServingState) -> None:
    """`POST /v1/bigquery/<Model>` for every model; while the route is off it says so (every call is a 404)."""
    enabled = state.settings.bigquery_enabled
    doc.add_tag(
        TAG,
        "BigQuery remote functions: score table rows from SQL (docs: Score a table)."
        + (
            ""
            if enabled
            else " Off here: set BIGQUERY_INVOKERS or BIGQUERY_TRUST_FRONT_END; until then every call is a 404."
        ),
    )
    error_ref = doc.add_schema("BigQueryError", REMOTE_ERROR_SCHEMA)
    for runtime in state.registry:
        name = runtime.spec.name
        reply: dict[str, Any] = {"description": f"{name}'s result, or one field of it (`output`); null for a bad row."}
        request_schema = {
            "type": "object",
            "description": "What BigQuery sends: one argument list per row.",
            "properties": {
                "requestId": {"type": "string"},
                "caller": {"type": "string"},
                "sessionUser": {"type": "string"},
                "userDefinedContext": {
                    "type": "object",
                    "properties": {"on_error": {"enum": ["fail", "null"]}, "output": {"type": "string"}},
                    "additionalProperties": False,
                },
                "calls": {
                    "type": "array",
                    "items": {
                        "type": "array",
                        "minItems": 1,
                        "description": f"One JSON object (a {name} input), or {name}'s input properties as "
                        "positional values in declared order.",
                    },
                },
            },
            "required": ["calls"],
        }
        replies = {
            "type": "object",
            "properties": {"replies": {"type": "array", "items": reply}},
            "required": ["replies"],
            "additionalProperties": False,
        }
        examples = runtime.spec.input_schema.get("examples")
        calls = [[example] for example in examples] if isinstance(examples, list) else []
        doc.add_operation(
            f"/v1/bigquery/{name}",
            "post",
            {
                "tags": [TAG],
                "operationId": f"bigquery_{name}",
                "summary": f"{name} as a BigQuery remote function",
                "requestBody": doc.json_request_body(request_schema, [{"calls": calls}] if calls else []),
                "responses": {
                    "200": doc.json_response("One reply per call, in order.", replies),
                    **{
                        str(status): doc.json_response(text, error_ref)
                        for status, text in _STATUS_TEXT.items()
                        # API keys never apply here; a token is checked only with BIGQUERY_INVOKERS.
                        if status not in (401, 403) or state.settings.bigquery_invokers
                    },
                },
            },
        )
