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

from flask import Flask, Response, request
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


def security_headers(response: Response) -> Response:
    """After-request step: add the security headers above to `response`."""
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "no-referrer")
    # Flask's automatic OPTIONS answer is an empty "text/html" body: not a page.
    if response.mimetype == "text/html" and request.method != "OPTIONS":
        headers.setdefault("Content-Security-Policy", HTML_CSP)
        headers.setdefault("X-Frame-Options", "DENY")
    else:
        headers.setdefault("Content-Security-Policy", OTHER_CSP)
    if request.is_secure:
        headers.setdefault("Strict-Transport-Security", HSTS)
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
