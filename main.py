"""model-serving: the WSGI app that App Engine, Cloud Run and gunicorn load as `main:app`.

Production: `gunicorn -c gunicorn.conf.py main:app`.
Cloud Functions: the HTTP function `api` (`functions-framework --target=api`) serves the
same app, every route.
Development: `python main.py [--host H] [--port P] [--debug]` (Flask's own server, as in
the tutorial; never in production).
"""

from __future__ import annotations

import argparse

from serving.app import create_app
from serving.config.fields import SettingsError
from serving.platform.functions import http_entry_point
from serving.security.hardening import QuietRequestHandler

app = create_app()
api = http_entry_point(app)


def _cli() -> None:
    settings = app.extensions["serving"].settings
    parser = argparse.ArgumentParser(description="Serve the models in handlers/ with Flask's development server.")
    parser.add_argument("-a", "--host", default=settings.host, help="address to bind (default: %(default)s)")
    parser.add_argument(
        "-p", "--port", type=int, default=settings.listen_port, help="port to bind (default: %(default)s)"
    )
    parser.add_argument("-d", "--debug", action="store_true", help="Flask debug mode (reloader, debugger)")
    args = parser.parse_args()
    try:
        settings.check_debug(args.debug, "--debug")
    except SettingsError as exc:
        parser.error(str(exc))
    app.run(host=args.host, port=args.port, debug=args.debug, request_handler=QuietRequestHandler)


if __name__ == "__main__":
    _cli()
