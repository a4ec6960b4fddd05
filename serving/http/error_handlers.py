"""Every error rendered as JSON in one place: `{"message", "code", "request_id", ...}`.

`register_error_handlers` turns an `ApiError` (serving/errors.py), Werkzeug's own HTTP
errors (routing, body limits) and any unexpected exception into a JSON response with the
right status and headers. No response of any status is HTML, and a 500 never shows a
traceback: that goes to the log, and the client gets the request id to quote.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from serving.errors import (
    ApiError,
    BadRequest,
    Conflict,
    Forbidden,
    InternalError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    TooManyRequests,
    Unauthorized,
    UnsupportedMediaType,
)
from serving.observability.logs import current_request_id

# The errors' log lines keep the name they always had.
log = logging.getLogger("serving.errors")

# Werkzeug raises its own exceptions for routing and body limits; map the statuses we
# answer to our classes so they render the same way.
_FROM_WERKZEUG: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    405: MethodNotAllowed,
    409: Conflict,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    429: TooManyRequests,
}


def register_error_handlers(app: Flask, *, error_alias: Callable[[], bool]) -> None:
    """Render every error of `app` as JSON; log 5xx with their traceback.

    `error_alias()` says whether the current request's errors also carry their message as
    `error`: TensorFlow Serving's clients read it there, ours from `message`
    (serving/http/batch.py decides which requests speak that wire format).
    """

    def render(error: ApiError) -> Response:
        body = error.body()
        request_id = current_request_id()
        if request_id:
            body.setdefault("request_id", request_id)
        if error_alias():
            body.setdefault("error", error.message)
        response = jsonify(body)
        response.status_code = error.status
        for name, value in error.headers.items():
            response.headers[name] = value
        return response

    @app.errorhandler(ApiError)
    def _api_error(error: ApiError) -> Response:
        if error.status >= 500:
            log.warning("request failed: %s", error.message, extra={"status": error.status})
        return render(error)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        return render(_from_http_exception(exc))

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled exception")
        return render(InternalError("Internal server error; quote the request id when reporting it"))


def _from_http_exception(exc: HTTPException) -> ApiError:
    status = exc.code or 500
    cls = _FROM_WERKZEUG.get(status)
    if cls is None:
        error = ApiError(exc.description or "HTTP error")
        error.status = status
        error.code = "http_error"
    elif cls is NotFound:
        error = cls("Not found: no such route")
    elif cls is MethodNotAllowed:
        error = cls("Method not allowed for this route")
    elif cls is PayloadTooLarge:
        error = cls("Request body too large")
    else:
        error = cls()
    # Keep headers Werkzeug computed (e.g. `Allow` on a 405).
    for name, value in exc.get_headers():
        if name.lower() != "content-type":
            error.headers[name] = value
    return error
