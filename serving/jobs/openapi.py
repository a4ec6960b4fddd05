"""The OpenAPI description of the job routes (routes.py), and of the 202 answer of models that may run as jobs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from serving.http.state import ServingState

if TYPE_CHECKING:
    from serving.openapi.builder import OpenApiDocument


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
    unavailable = {
        "503": doc.json_response("Jobs are off on this server, or the job store is unavailable.", doc.ref("Error"))
    }
    doc.add_operation(
        "/v1/jobs/{job_id}",
        "get",
        {
            "tags": ["jobs"],
            "operationId": "get_job",
            "summary": "A job's state, and its result once it has succeeded",
            "parameters": [parameter],
            "responses": {"200": doc.json_response("The job.", job_ref), **doc.error_responses(404), **unavailable},
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
                "200": doc.json_response("The canceled job.", job_ref),
                **doc.error_responses(404),
                "409": doc.json_response("The job has already finished.", doc.ref("Error")),
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
        accepted = doc.json_response("Accepted as a job: poll `Location`.", accepted_ref)
        accepted["headers"]["Location"] = {"description": "`/v1/jobs/<job_id>`.", "schema": {"type": "string"}}
        operation["responses"]["202"] = accepted
        operation["responses"].update(
            {
                "422": doc.json_response("The Idempotency-Key was used for a different request.", doc.ref("Error")),
                **unavailable,
            }
        )
