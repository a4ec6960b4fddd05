"""CORS for browser widgets: which origins may call the API, and preflights as bodiless 204s.

Flask-CORS answers preflights and adds the `Access-Control-*` headers; `CORS_ORIGINS`
says which origins (default `*`). No credentials are ever allowed, and the headers a
widget needs to read (the request id, the model's version, `Location` of a job,
`Retry-After`, and those a protocol's clients read, such as the JSON part's length of a
binary Open Inference answer) are exposed.

With `*` (the default) every answer but a preflight gets the same two headers, whoever
asks: `any_origin_headers` adds them, computed once, in front of Flask-CORS's own hook,
which then sees them and leaves the answer alone. Flask-CORS's hook matches the path
against its resources and resolves its options on every response, about a tenth of a
trivial model's request (bench/wsgi_cost.py); the constant pair costs nearly nothing.
Preflights, the rare private-network request and named origins stay Flask-CORS's
(tests/http/test_cors.py compares the answers with Flask-CORS's alone).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from flask import Flask, Request, Response, request
from flask_cors import CORS

from serving.config.settings import Settings
from serving.http.model_version import MODEL_VERSION_HEADER
from serving.observability.logs import REQUEST_ID_HEADER

ALLOW_ORIGIN = "Access-Control-Allow-Origin"
EXPOSE_HEADERS = "Access-Control-Expose-Headers"
# Chrome's Private Network Access: a request carrying it gets an answer header of its own.
_PRIVATE_NETWORK_ENVIRON = "HTTP_ACCESS_CONTROL_REQUEST_PRIVATE_NETWORK"


def _exposed(exposed_headers: Iterable[str]) -> list[str]:
    """The response headers a page may read: ours, then the protocols' own."""
    return [REQUEST_ID_HEADER, MODEL_VERSION_HEADER, "Location", "Retry-After", *exposed_headers]


def cors_extension(settings: Settings, exposed_headers: Iterable[str] = ()) -> Callable[[Flask], None]:
    """Flask-CORS's `init_app` for `settings.cors_origins`: it registers one after-request hook.

    `exposed_headers` are the wire protocols' own response headers, exposed beside ours.

    `intercept_exceptions=False`: Flask-CORS would otherwise wrap the app's exception
    handling too. Every error response here is rendered by an error handler and passes
    the after-request hooks anyway, so its headers reach errors all the same.
    """
    any_origin = settings.cors_origins == ("*",)
    cors = CORS(
        origins="*" if any_origin else list(settings.cors_origins),
        # A public API answers `*` rather than echoing each origin: no credentials are
        # ever allowed, and shared caches can keep one copy of each response.
        send_wildcard=any_origin,
        supports_credentials=False,
        methods=["GET", "POST", "DELETE", "OPTIONS"],
        expose_headers=_exposed(exposed_headers),
        max_age=3600,
        intercept_exceptions=False,
    )
    return cors.init_app


def any_origin_headers(
    settings: Settings, exposed_headers: Iterable[str] = ()
) -> Callable[[Response], Response] | None:
    """After-request step: with `CORS_ORIGINS=*`, what Flask-CORS adds to an answer that is no preflight.

    That is `Access-Control-Allow-Origin: *` and the exposed headers (sorted and joined as
    Flask-CORS writes them), whether or not the request has an `Origin`, success or
    error alike. The hook runs just before Flask-CORS's, which leaves an answer that has
    `Access-Control-Allow-Origin` alone. Everything else goes on to Flask-CORS untouched:
    a preflight (`OPTIONS`), a request asking for private-network access, and an answer
    whose view set its own `Access-Control-Allow-Origin` (the widget's static files).
    With named origins the answer depends on the origin: None (no step).
    """
    if settings.cors_origins != ("*",):
        return None
    expose = ", ".join(sorted(_exposed(exposed_headers)))

    def _any_origin(response: Response) -> Response:
        req: Request = request._get_current_object()  # type: ignore[attr-defined]
        if req.method == "OPTIONS" or _PRIVATE_NETWORK_ENVIRON in req.environ:
            return response
        headers = response.headers
        # `getlist`, not `get`: Werkzeug's `get` raises and catches a KeyError on a miss.
        if not headers.getlist(ALLOW_ORIGIN):
            headers.add(ALLOW_ORIGIN, "*")
            headers.add(EXPOSE_HEADERS, expose)
        return response

    return _any_origin


def vary_on_origin(settings: Settings) -> Callable[[Response], Response] | None:
    """After-request step adding `Vary: Origin` when the answer depends on the caller's origin.

    With named origins, `Access-Control-Allow-Origin` echoes the request's origin, or is
    absent for an origin not allowed: a shared cache must keep one copy per origin.
    Flask-CORS adds `Vary` only when several origins are configured; with one, a cache
    could serve its answer without the header to the allowed origin, or the reverse.
    With `*` the answer is the same for everyone: None (no step).
    """
    if settings.cors_origins == ("*",):
        return None

    def _vary(response: Response) -> Response:
        response.vary.add("Origin")
        return response

    return _vary


def preflight_no_content(response: Response) -> Response:
    """After-request step: Flask's automatic OPTIONS answer (an empty text/html 200) becomes a 204.

    A CORS preflight answer is conventionally a bodiless 204.
    """
    req: Request = request._get_current_object()  # type: ignore[attr-defined]
    if req.method == "OPTIONS" and not response.content_length:
        response.status_code = 204
        del response.headers["Content-Type"]
    return response
