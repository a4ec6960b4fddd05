"""`GET /docs`: interactive API documentation (Swagger UI) for `/openapi.json`.

Swagger UI's assets are vendored under `serving/http/static/swagger-ui/` (npm's
`swagger-ui-dist`, Apache-2.0, pinned as `SWAGGER_UI_VERSION`; `bin/vendor-swagger-ui.sh`
refreshes them) and served from `/docs/assets/`, so the page loads nothing from a CDN:
its Content-Security-Policy allows only this origin.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, send_from_directory, url_for
from markupsafe import escape

from serving.security.access import public

SWAGGER_UI_VERSION = "5.35.0"
STATIC_DIR = Path(__file__).resolve().parent / "static"
SWAGGER_UI_DIR = STATIC_DIR / "swagger-ui"
# The page's own script, beside the vendored ones.
_OWN_ASSETS = {"docs.js"}
# Vendored files never change under a version; browsers may keep them a day.
_ASSET_MAX_AGE_S = 86400

# Swagger UI sets inline styles, so styles may be inline; scripts, images (but its inline
# SVG icons, data: URLs) and fetches (the document, "Try it out") stay on this origin.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'self'"
)

blueprint = Blueprint("docs", __name__)

_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>model-serving API</title>
  <link rel="stylesheet" href="{css}">
  <link rel="icon" type="image/png" href="{icon}" sizes="32x32">
</head>
<body>
  <div id="swagger-ui" data-openapi-url="{openapi}"></div>
  <script src="{bundle}"></script>
  <script src="{init}"></script>
</body>
</html>
"""


@blueprint.get("/docs")
@public
def docs_page() -> Response:
    def asset(name: str) -> str:
        return str(escape(url_for("docs.docs_asset", filename=name)))

    page = _PAGE.format(
        css=asset("swagger-ui.css"),
        icon=asset("favicon-32x32.png"),
        bundle=asset("swagger-ui-bundle.js"),
        init=asset("docs.js"),
        openapi=escape(url_for("openapi.openapi_json")),
    )
    response = Response(page, mimetype="text/html")
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return response


@blueprint.get("/docs/assets/<path:filename>")
@public
def docs_asset(filename: str) -> Response:
    directory = STATIC_DIR if filename in _OWN_ASSETS else SWAGGER_UI_DIR
    # send_from_directory refuses paths that leave the directory (a 404).
    return send_from_directory(directory, filename, max_age=_ASSET_MAX_AGE_S)
