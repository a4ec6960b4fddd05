"""Cloud Functions: one HTTP function that serves the whole API.

functions-framework (locally `functions-framework --target=api`, in the cloud
`gcloud functions deploy ... --entry-point=api --trigger-http`) owns the HTTP server and
its own Flask app, and calls the entry point with each `flask.Request`. `http_entry_point`
runs that request through this project's app as a plain WSGI call: same path, query,
method, headers and body, so every route answers exactly as it does on App Engine and
Cloud Run (status, JSON body, CORS and request-id headers, logs).

Only public surfaces are used: the WSGI call of the app, werkzeug's `Response.from_app`,
and functions-framework's documented `errorhandler` decorator.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flask
import functions_framework
from werkzeug.exceptions import NotFound
from werkzeug.wrappers import Response


class ForwardedResponse(Response):
    """The app's response as it produced it: no Content-Type is added where it set none
    (a 204 preflight answer has none under gunicorn, so it has none here either)."""

    default_mimetype = None


HttpFunction = Callable[[flask.Request], Response]


def forward(app: flask.Flask, request: flask.Request) -> Response:
    """`app`'s response to `request`, which was received by another WSGI app."""
    environ = dict(request.environ)
    # The framework's request object sits in the environ; the app builds its own.
    environ.pop("werkzeug.request", None)
    # Streamed, not buffered: large bodies and responses pass through unchanged. The body
    # stream (`wsgi.input`) is still unread: the framework reads nothing before the call.
    return ForwardedResponse.from_app(app, environ)


def http_entry_point(app: flask.Flask) -> HttpFunction:
    """The functions-framework HTTP function that serves every route of `app`."""

    def api(request: flask.Request) -> Response:
        return forward(app, request)

    _route_framework_404s(app)
    return api


def _route_framework_404s(app: flask.Flask) -> None:
    """Send the paths functions-framework answers itself to `app` too.

    The framework answers `/robots.txt` and `/favicon.ico` with its own HTML 404 instead of
    calling the function. Its `errorhandler` hook (the framework's documented way to handle
    errors) lets the app answer them, as JSON, like any other path. Outside the framework
    (gunicorn imports main.py too) the hook is a stand-in that does nothing.
    """
    register: Any = functions_framework.errorhandler

    def answer_with_app(_error: NotFound) -> Response:
        return forward(app, flask.request)

    register(NotFound)(answer_with_app)
