"""Structured logs: one JSON object per line, and a request id on every response.

`configure_logging()` sets up the root logger once per process (logging is per process by
nature, so this is the one piece of global state the core touches). `install_request_hooks()`
gives each request an id (the caller's `X-Request-Id` when it is sane, else a new one),
echoes it in the response, and logs one line per request with method, path, status,
latency and model.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
import traceback
from typing import Any

import orjson
from flask import Flask, Response, g, request

REQUEST_ID_HEADER = "X-Request-Id"
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

# Attributes every LogRecord has; anything else on a record came from `extra=` and is
# emitted as a field of its own.
_STANDARD_ATTRS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line with `severity`, which Cloud Logging reads."""

    def __init__(self) -> None:
        super().__init__()
        # Every request logs a line: format the date and time once per second, not per line.
        self._second: tuple[int, str] = (-1, "")

    def _timestamp(self, created: float) -> str:
        whole = int(created)
        second, prefix = self._second
        if second != whole:
            prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
            self._second = (whole, prefix)
        return f"{prefix}.{int((created - whole) * 1000):03d}+00:00"

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self._timestamp(record.created),
            "severity": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            # Error Reporting groups errors by the traceback found in the message.
            entry["message"] += "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip()
        try:
            # orjson: a fifth of json.dumps' time, on a line written for every request.
            return orjson.dumps(entry, default=str).decode()
        except TypeError:  # e.g. an extra with non-string keys or a huge integer
            return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """A readable single line for a terminal, with extras as key=value."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = " ".join(
            f"{key}={value}"
            for key, value in record.__dict__.items()
            if key not in _STANDARD_ATTRS and not key.startswith("_")
        )
        return f"{line} {extras}" if extras else line


class LineHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes each record as one line with one `write()` to the stream's file descriptor.

    `StreamHandler` holds a lock while it formats and writes; with a record per request
    and dozens of request threads, that lock was a tenth of a worker's time under load
    (threads queueing on it, bench/RESULTS.md). One `write()` of a whole line needs no
    lock: the kernel keeps each call's bytes together (on a pipe, lines up to 4 KiB are
    atomic, as they are across gunicorn's processes anyway). A stream without a file
    descriptor (a test's capture) gets the standard, locked path.
    """

    def handle(self, record: logging.LogRecord) -> bool:
        try:
            fd = self.stream.fileno()
        except (AttributeError, OSError, ValueError):
            return bool(super().handle(record))
        passed: object = self.filter(record)
        if isinstance(passed, logging.LogRecord):  # Python 3.12+: a filter may replace it
            record = passed
        if not passed:
            return False
        try:
            data = (self.format(record) + self.terminator).encode("utf-8", "backslashreplace")
            while data:
                data = data[os.write(fd, data) :]
        except Exception:  # noqa: BLE001 - logging must never break the request that logs
            self.handleError(record)
        return True


def configure_logging(level: str, fmt: str) -> None:
    """Send every log record to stderr as JSON (or text); safe to call more than once."""
    root = logging.getLogger()
    handler = next((h for h in root.handlers if getattr(h, "_serving", False)), None)
    if handler is None:
        # Standard streams only: App Engine's filesystem is read-only, and the platforms
        # collect stdout/stderr into Cloud Logging.
        handler = LineHandler(sys.stderr)
        handler._serving = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root.setLevel(level)
    # Neither format shows the thread or process name, and looking them up is a visible
    # part of every record's cost (one record per request).
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


def new_request_id() -> str:
    """A fresh, unguessable request id (32 hex digits)."""
    return os.urandom(16).hex()


def install_request_hooks(app: Flask) -> None:
    """Attach a request id to every request and log each one when it ends."""
    access_log = logging.getLogger("serving.request")

    @app.before_request
    def _start() -> None:
        g.started = time.perf_counter()
        incoming = request.headers.get(REQUEST_ID_HEADER, "")
        g.request_id = incoming if _SANE_REQUEST_ID.match(incoming) else new_request_id()

    @app.after_request
    def _finish(response: Response) -> Response:
        if request.method == "OPTIONS" and not response.content_length:
            # Flask's automatic OPTIONS answer is an empty text/html 200; a CORS
            # preflight answer is conventionally a bodiless 204.
            response.status_code = 204
            del response.headers["Content-Type"]
        request_id = g.get("request_id") or new_request_id()
        response.headers[REQUEST_ID_HEADER] = request_id
        started = g.get("started")
        latency_ms = (time.perf_counter() - started) * 1000 if started is not None else None
        fields: dict[str, Any] = {
            "request_id": request_id,
            "method": request.method,
            "path": request.path,
            "status": response.status_code,
            "latency_ms": round(latency_ms, 3) if latency_ms is not None else None,
        }
        model = g.get("model")
        if model:
            fields["model"] = model
        # The API key's public id (serving/access.py), never the secret.
        key_id = g.get("api_key_id")
        if key_id:
            fields["key_id"] = key_id
        level = logging.ERROR if response.status_code >= 500 else logging.INFO
        access_log.log(level, "%s %s %s", request.method, request.path, response.status_code, extra=fields)
        return response
