"""The API's errors: one exception class per kind, each with its status and message.

Code anywhere in the request path (the model runtime included) raises an `ApiError`
subclass; serving/http/error_handlers.py renders it, and Werkzeug's own HTTP errors and
any unexpected exception, as JSON in one place. This module imports no Flask, so the
runtime can raise these without depending on the web framework.
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """Base of every error the API reports; subclasses set `status` and `code`."""

    status: int = 500
    code: str = "internal"
    message: str = "Internal server error"

    def __init__(self, message: str | None = None, **details: Any) -> None:
        super().__init__(message or self.message)
        if message is not None:
            self.message = message
        self.details = details
        self.headers: dict[str, str] = {}

    def body(self) -> dict[str, Any]:
        """The JSON document sent to the client."""
        return {"message": self.message, "code": self.code, **self.details}


class BadRequest(ApiError):
    status, code, message = 400, "bad_request", "Bad request"


class NoJsonObject(BadRequest):
    """No body, or a body that is not declared as JSON: the tutorial's exact message."""

    code, message = "no_json", "No JSON object"


class MalformedJson(BadRequest):
    code, message = "malformed_json", "Malformed JSON"


class ValidationFailed(BadRequest):
    code, message = "invalid_input", "The request does not match the model's input schema"


class InputRejected(BadRequest):
    """The request matched the schema but the model found its content unusable.

    What the server answers when a model raises `serving.kit.InvalidInput`.
    """

    code = "invalid_input"


class Unauthorized(ApiError):
    status, code, message = 401, "unauthorized", "Missing or invalid API key"


class Forbidden(ApiError):
    status, code, message = 403, "forbidden", "Forbidden"


class ModelForbidden(Forbidden):
    """The request's API key is scoped to other models."""

    code = "model_forbidden"


class NotFound(ApiError):
    status, code, message = 404, "not_found", "Not found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class MethodNotAllowed(ApiError):
    status, code, message = 405, "method_not_allowed", "Method not allowed"


class Conflict(ApiError):
    status, code, message = 409, "conflict", "Conflict"


class PayloadTooLarge(ApiError):
    status, code, message = 413, "payload_too_large", "Request body too large"


class TooManyInstances(PayloadTooLarge):
    """A request asks for more predictions than `PREDICT_MAX_INSTANCES`: batch instances,
    OpenAI embedding inputs or Open Inference (v2) rows."""

    code, message = "too_many_instances", "Too many instances in one request"


class UnsupportedMediaType(ApiError):
    status, code, message = 415, "unsupported_media_type", "Unsupported media type"


class TooManyRequests(ApiError):
    status, code, message = 429, "rate_limited", "Too many requests"


class InternalError(ApiError):
    status, code, message = 500, "internal", "Internal server error"


class ModelNotServing(ApiError):
    """The model cannot serve: still loading, failed, unavailable, or degraded by timeouts.

    Not `serving.kit.ModelUnavailable`, which a model's `setup` raises to mark itself
    unavailable; this one is the 503 the API answers for any of these states.
    """

    status, code, message = 503, "model_unavailable", "Model unavailable"


class Overloaded(ApiError):
    status, code, message = 503, "overloaded", "Server busy, retry later"


class GatewayTimeout(ApiError):
    status, code, message = 504, "timeout", "The model did not answer in time"


# --- asynchronous jobs ---


class JobNotFound(NotFound):
    code, message = "job_not_found", "No job with this id (it may have been purged after its retention)"


class JobFinished(Conflict):
    code, message = "job_finished", "The job has already finished"


class IdempotencyKeyReused(ApiError):
    """An `Idempotency-Key` sent again with a different request (RFC draft: 422)."""

    status, code, message = 422, "idempotency_key_reused", "This Idempotency-Key was used for a different request"


class JobsUnavailable(ApiError):
    status, code, message = 503, "jobs_unavailable", "Asynchronous jobs are not available"


# --- uploads: multipart/form-data and raw binary bodies ---


class MalformedForm(BadRequest):
    """A `multipart/form-data` body that cannot be parsed (no boundary, cut short, ...)."""

    code, message = "malformed_form", "Malformed multipart/form-data body"


class DuplicateField(BadRequest):
    code, message = "duplicate_field", "A form field was sent twice"


class UnknownField(BadRequest):
    code, message = "unknown_field", "The model takes no such field"


class UnexpectedFile(BadRequest):
    code, message = "unexpected_file", "A file was sent for a field that is not binary"


class EmptyBody(BadRequest):
    code, message = "empty_body", "The request body is empty"


class TooManyParts(PayloadTooLarge):
    code, message = "too_many_parts", "Too many parts in the multipart/form-data body"
