"""gunicorn's own responses, made like the app's: JSON errors and no `Server: gunicorn`.

gunicorn answers some requests before they reach the app (a request line or headers over
the limits, a malformed request) with a small HTML page, and names itself in a `Server`
header on every response. `harden_gunicorn()`, called from gunicorn.conf.py, replaces the
error page with a JSON body shaped like the app's errors and the banner with a neutral
one. gunicorn has no setting for either, so this swaps two module attributes that have
kept their names and signatures across gunicorn releases; a test over real HTTP (an
oversized header) fails if a release changes them.
"""

from __future__ import annotations

import importlib
import json
import socket
from typing import Any

SERVER_BANNER = "model-serving"
_CODES = {400: "bad_request", 403: "forbidden", 414: "uri_too_long", 417: "expectation_failed", 431: "header_too_large"}


def json_error_bytes(status: int, reason: str, message: str) -> bytes:
    """A complete `Connection: close` HTTP/1.1 response with a JSON error body."""
    text = f"{reason}: {message}" if message else reason
    body = json.dumps({"message": text[:300], "code": _CODES.get(status, "http_error")})  # ASCII only
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        "Connection: close\r\n"
        "Content-Type: application/json\r\n"
        "X-Content-Type-Options: nosniff\r\n"
        f"Content-Length: {len(body)}\r\n"
        "\r\n"
    )
    return (head + body).encode("ascii")


def harden_gunicorn() -> None:
    """Make gunicorn's own error responses JSON and its `Server` header neutral."""
    util: Any = importlib.import_module("gunicorn.util")
    wsgi: Any = importlib.import_module("gunicorn.http.wsgi")
    write_nonblock = util.write_nonblock

    def write_error(sock: socket.socket, status_int: int, reason: str, mesg: str) -> None:
        write_nonblock(sock, json_error_bytes(int(status_int), str(reason), str(mesg)))

    if not callable(getattr(util, "write_error", None)) or not isinstance(getattr(wsgi, "SERVER", None), str):
        raise RuntimeError("gunicorn changed util.write_error or http.wsgi.SERVER: see gunicorn_hardening.py")
    util.write_error = write_error
    wsgi.SERVER = SERVER_BANNER
