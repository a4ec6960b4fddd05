"""The website widgets: the demo page at `GET /` and the widget's files at `/static/`.

`web/static/` holds the dependency-free widget (`widget.js`, an ES module, and
`widget.css`) that other websites embed with one tag, and the demo page's own script and
style. App Engine serves that directory itself (a static handler in app.yaml); everywhere
else (Cloud Run, Cloud Functions, `make run`) these routes do.

The widget's files are public and answer `Access-Control-Allow-Origin: *` whatever
`CORS_ORIGINS` says: a module script loaded from another origin needs CORS, and a page
on an origin the API refuses must still load the widget so it can tell its visitor why
the model cannot be used. `CORS_ORIGINS` governs the API (`/v1/...`), where the data is.
"""

from __future__ import annotations

import werkzeug.exceptions
from flask import Blueprint, Response, send_file, send_from_directory

from serving.config.settings import PROJECT_ROOT
from serving.errors import NotFound
from serving.security.access import public

WEB_DIR = PROJECT_ROOT / "web"
STATIC_DIR = WEB_DIR / "static"
DEMO_PAGE = WEB_DIR / "index.html"

# The demo page holds no inline script or style, so it can promise that to the browser.
# blob: and data: images are the previews of chosen image files.
DEMO_PAGE_CSP = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' blob: data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
# Embedding sites link /static/widget.js by a fixed URL, so it must not be cached for
# long; the ETag makes revalidation cheap.
STATIC_MAX_AGE_S = 600

blueprint = Blueprint("web", __name__)


@blueprint.get("/")
@public
def demo_page() -> Response:
    """The demo page: every model with its widget and a copy-paste embed snippet."""
    response = send_file(DEMO_PAGE, mimetype="text/html", max_age=0)
    response.headers["Content-Security-Policy"] = DEMO_PAGE_CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@blueprint.get("/static/<path:filename>")
@public
def static_file(filename: str) -> Response:
    """A file from web/static/, readable by scripts on any origin; 404 JSON when absent."""
    try:
        # send_from_directory refuses paths that leave the directory, as missing files.
        response = send_from_directory(STATIC_DIR, filename, max_age=STATIC_MAX_AGE_S)
    except werkzeug.exceptions.NotFound:
        raise NotFound("No such file under /static/") from None
    if filename.endswith(".js"):
        # Python 3.11 guesses application/javascript; the HTML standard's name is this one.
        response.mimetype = "text/javascript"
    response.headers["Access-Control-Allow-Origin"] = "*"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
