"""CORS for browser widgets: which origins may call the API, and preflights as bodiless 204s.

Flask-CORS answers preflights and adds the `Access-Control-*` headers; `CORS_ORIGINS`
says which origins (default `*`). No credentials are ever allowed, and the headers a
widget needs to read (the request id, the model's version, `Location` of a job,
`Retry-After`, and those a protocol's clients read, such as the JSON part's length of a
binary Open Inference answer) are exposed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from flask import Flask, Response, request
from flask_cors import CORS

from serving.config.settings import Settings
from serving.http.model_version import MODEL_VERSION_HEADER
from serving.observability.logs import REQUEST_ID_HEADER


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
        expose_headers=[REQUEST_ID_HEADER, MODEL_VERSION_HEADER, "Location", "Retry-After", *exposed_headers],
        max_age=3600,
        intercept_exceptions=False,
    )
    return cors.init_app


def preflight_no_content(response: Response) -> Response:
    """After-request step: Flask's automatic OPTIONS answer (an empty text/html 200) becomes a 204.

    A CORS preflight answer is conventionally a bodiless 204.
    """
    if request.method == "OPTIONS" and not response.content_length:
        response.status_code = 204
        del response.headers["Content-Type"]
    return response
