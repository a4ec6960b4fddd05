"""Every error rendered as JSON in one place, in the shape of the protocol whose route was called.

`register_error_handlers` turns an `ApiError` (serving/errors.py), Werkzeug's own HTTP
errors (routing, body limits) and any unexpected exception into a JSON response with the
right status and headers. No response of any status is HTML, and a 500 never shows a
traceback: that goes to the log, and the client gets the request id to quote.

The body is `{"message", "code", "request_id", ...}` (`standard_error_body`), unless the
request is one of a wire protocol's (serving/protocols/): then that protocol's
`error_body` writes it, whatever refused the request, because that protocol's clients
parse only their own shape. Which protocol is the blueprint of the matched route; for a
405, of the route the path matches with another method; for a 404, of the blueprint
whose `url_prefix` is the longest one the path falls under.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from flask import Flask, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.exceptions import MethodNotAllowed as WerkzeugMethodNotAllowed
from werkzeug.routing import RoutingException

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


ErrorBody = Callable[[ApiError], dict[str, Any]]


def standard_error_body(error: ApiError) -> dict[str, Any]:
    """`{"message", "code", ...details, "request_id"}`: the body of every error outside a protocol's own shape."""
    body = error.body()
    request_id = current_request_id()
    if request_id:
        body.setdefault("request_id", request_id)
    return body


def register_error_handlers(app: Flask, error_bodies: Mapping[str, ErrorBody]) -> None:
    """Render every error of `app` as JSON; log 5xx with their traceback.

    `error_bodies` maps a blueprint's name to the error body of the protocol it serves
    (serving/protocols/); any other route's errors get `standard_error_body`.
    """

    def render(error: ApiError) -> Response:
        response = jsonify(error_bodies.get(_blueprint_called(error_bodies) or "", standard_error_body)(error))
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


def _blueprint_called(candidates: Mapping[str, Any]) -> str | None:
    """The blueprint of the route the current request called, or would have called."""
    if request.blueprint is not None:
        return request.blueprint
    refused = request.routing_exception
    allowed = list(refused.valid_methods or ()) if isinstance(refused, WerkzeugMethodNotAllowed) else []
    if allowed:
        # The path matches a route, with another method: ask the URL map which one.
        adapter = current_app.create_url_adapter(request)
        try:
            endpoint = adapter.match(method=allowed[0])[0] if adapter is not None else ""
        except (HTTPException, RoutingException):
            endpoint = ""
        return endpoint.rpartition(".")[0] or None
    # No route: the protocol whose URL space holds the path, the most specific first.
    path = request.path
    owners = [
        (len(prefix), name)
        for name, blueprint in current_app.blueprints.items()
        if name in candidates and (prefix := (blueprint.url_prefix or "").rstrip("/"))
        if path == prefix or path.startswith(prefix + "/")
    ]
    return max(owners)[1] if owners else None


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
