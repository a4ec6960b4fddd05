"""Response hardening: security headers on every response, and no debug mode in production.

Every response gets `X-Content-Type-Options: nosniff` and `Referrer-Policy: no-referrer`.
HTML pages (the demo page, API docs) get a strict Content-Security-Policy: scripts,
styles, fonts and API calls only from this origin, no inline script or style, no framing
by other sites, no plugins; every other response gets `default-src 'none'`, so a JSON body
opened in a browser can run nothing. Requests that arrived over HTTPS (behind Google's
front end, `request.is_secure` once ProxyFix has applied `X-Forwarded-Proto`) also get
HSTS. A view may set its own value of any of these headers; it is kept.
"""

from __future__ import annotations

from flask import Flask, Request, Response, request
from werkzeug.serving import WSGIRequestHandler

from serving.config.settings import Settings

HTML_CSP = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "manifest-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
OTHER_CSP = "default-src 'none'; frame-ancestors 'none'"
HSTS = "max-age=31536000; includeSubDomains"

# (name, lowercased name, value), in the order they are added.
_Header = tuple[str, str, str]


def _headers(*pairs: tuple[str, str]) -> tuple[_Header, ...]:
    return tuple((name, name.lower(), value) for name, value in pairs)


_EVERY_RESPONSE = (("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "no-referrer"))
_FOR_PAGES = _headers(*_EVERY_RESPONSE, ("Content-Security-Policy", HTML_CSP), ("X-Frame-Options", "DENY"))
_FOR_THE_REST = _headers(*_EVERY_RESPONSE, ("Content-Security-Policy", OTHER_CSP))
_FOR_HTTPS = _headers(("Strict-Transport-Security", HSTS))


def security_headers(response: Response) -> Response:
    """After-request step: add the security headers above to `response`."""
    headers = response.headers
    req: Request = request._get_current_object()  # type: ignore[attr-defined]
    # One pass over the few headers there are: a `setdefault` per header would scan them
    # all each time, raising and catching a KeyError inside Werkzeug for each one missing.
    present: set[str] = set()
    content_type = None
    for name, value in headers:
        lowered = name.lower()
        if content_type is None and lowered == "content-type":
            content_type = value
        present.add(lowered)
    # `response.mimetype`, from the header just found. Flask's automatic OPTIONS answer is
    # an empty "text/html" body: not a page.
    mimetype = content_type.partition(";")[0].strip() if content_type else None
    wanted = _FOR_PAGES if mimetype == "text/html" and req.method != "OPTIONS" else _FOR_THE_REST
    if req.is_secure:
        wanted += _FOR_HTTPS
    for name, lowered, value in wanted:
        if lowered not in present:  # a view's own value is kept
            headers.add(name, value)
    return response


def refuse_debug_in_production(app: Flask, settings: Settings) -> None:
    """Raise `SettingsError` when `app` would run in debug mode on Google Cloud (`Settings.check_debug`'s rule).

    `app.debug` too: Flask sets it from `FLASK_DEBUG` itself, also for settings built in code.
    """
    settings.check_debug(app.debug or settings.flask_debug)


class QuietRequestHandler(WSGIRequestHandler):
    """The development server (`python main.py`) without its `Werkzeug/x Python/y` banner."""

    def version_string(self) -> str:
        return "model-serving"
