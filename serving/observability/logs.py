"""Structured logs: one JSON object per line, and a request id on every response.

`configure_logging()` sets up the root logger once per process (logging is per process by
nature, so this is the one piece of global state the core touches). Two steps of the
request pipeline (serving/http/pipeline.py) live here: `start_request()` gives each request
an id (the caller's `X-Request-Id` when it is sane, else a new one), and `request_logger()`
echoes it in the response and logs one line per request with method, path, status,
latency and model. Other modules read the request's id with `current_request_id()` and
tag it with its model with `tag_model()`.

Every line is what Cloud Logging reads from stdout/stderr: `severity`, and, for records
written while a request is served, the request id, the model, and the trace of the
request's `traceparent` (or `X-Cloud-Trace-Context`) header as
`logging.googleapis.com/trace` = `projects/<project>/traces/<id>`, so the Logs Explorer
nests them under the platform's own request log. The per-request line also carries
`httpRequest` (method, URL, status, latency, sizes, user agent). Records with an exception
carry its traceback in `message`, which is where Error Reporting looks for it.

Formats: `json` (serving/observability/log_format.py), `text` (one readable line), and `gcp`:
google-cloud-logging's `StructuredLogHandler`, which writes the same JSON to the stream
without credentials or network, adding source location and logger labels.
"""

from __future__ import annotations

import logging
import os
import random
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Request, Response, g, has_request_context, request
from google.cloud.logging_v2.handlers import StructuredLogHandler
from werkzeug.datastructures import Headers

from serving.observability.log_format import ERROR_EVENT_TYPE, JsonFormatter, LineHandler, TextFormatter, record_extras

REQUEST_ID_HEADER = "X-Request-Id"
_REQUEST_ID_ENVIRON = "HTTP_X_REQUEST_ID"
_CLOUD_TRACE_ENVIRON = "HTTP_X_CLOUD_TRACE_CONTEXT"
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# What this module keeps on `g` for the request being served; other modules read it
# through `current_request_id()`, `request_started()` and `current_model()`. Each
# accessor resolves `g` once (`_get_current_object()`): an attribute read or call
# through the proxy itself costs several times as much, and several steps call them
# on every request.
_STARTED = "_log_started"
_REQUEST_ID = "_log_request_id"
_TRACE = "_log_trace"
_MODEL = "_log_model"
_MODEL_VERSION = "_log_model_version"

# W3C trace context: version-traceid-parentid-flags; version ff and all-zero ids are invalid.
_TRACEPARENT = re.compile(r"^(?!ff)[0-9a-f]{2}-(?!0{32})([0-9a-f]{32})-(?!0{16})([0-9a-f]{16})-([0-9a-f]{2})(?:-.*)?$")
# Google's own header: TRACE_ID[/SPAN_ID][;o=OPTIONS], the span id in decimal.
_CLOUD_TRACE = re.compile(r"^([0-9a-fA-F]{32})(?:/([0-9]{1,20}))?(?:;o=([0-9]+))?$")


@dataclass(frozen=True)
class TraceContext:
    """The trace a request belongs to, from its tracing headers."""

    trace_id: str
    span_id: str | None
    sampled: bool

    def resource_name(self, project: str | None) -> str:
        """`projects/<project>/traces/<id>`, the form Cloud Logging links; the bare id without a project."""
        return f"projects/{project}/traces/{self.trace_id}" if project else self.trace_id


def parse_trace_headers(headers: Headers) -> TraceContext | None:
    """The request's trace from `traceparent` (preferred) or `X-Cloud-Trace-Context`; None if neither is valid."""
    return trace_context(headers.get("traceparent", ""), headers.get("X-Cloud-Trace-Context", ""))


def trace_context(traceparent: str, cloud_trace_context: str) -> TraceContext | None:
    """The trace of a request whose tracing headers have these values ("" when absent)."""
    parent = _TRACEPARENT.match(traceparent.strip()) if traceparent else None
    if parent:
        trace_id, span_id, flags = parent.groups()
        return TraceContext(trace_id, span_id, bool(int(flags, 16) & 1))
    cloud = _CLOUD_TRACE.match(cloud_trace_context.strip()) if cloud_trace_context else None
    if cloud:
        trace_id, span, options = cloud.groups()
        span_number = int(span) if span else 0
        # Cloud Logging wants the span as 16 hex digits; 0 means none.
        span_id = f"{span_number:016x}" if 0 < span_number < 2**64 else None
        return TraceContext(trace_id.lower(), span_id, options == "1")
    return None


class RequestLogContext(logging.Filter):
    """Adds the current request's id, model and trace to every record written while serving it."""

    def __init__(self, project: str | None) -> None:
        super().__init__()
        self.project = project

    def filter(self, record: logging.LogRecord) -> bool:
        if not has_request_context():
            return True
        context = g._get_current_object()
        fields: dict[str, Any] = {"request_id": context.get(_REQUEST_ID), "model": context.get(_MODEL)}
        trace: TraceContext | None = context.get(_TRACE)
        if trace is not None:
            fields["trace"] = trace.resource_name(self.project)
            fields["span_id"] = trace.span_id
            fields["trace_sampled"] = trace.sampled
        for key, value in fields.items():
            if value is not None and not hasattr(record, key):
                setattr(record, key, value)
        return True


class GoogleCloudHandler(StructuredLogHandler):
    """google-cloud-logging's structured handler, fed this app's request context and extras.

    It writes Cloud Logging's JSON to the stream (no API calls, no credentials). Extras
    given with `extra=` become fields of the entry (google-cloud-logging reads them from
    `json_fields`), and only the per-request line carries `httpRequest`: the library would
    otherwise attach a partial one to every record written during a request.
    """

    def __init__(self, project: str | None) -> None:
        super().__init__(project_id=project, stream=sys.stderr)  # type: ignore[no-untyped-call]
        self._context = RequestLogContext(project)
        # The entry's message: the text plus any traceback (Error Reporting reads it there).
        self.setFormatter(logging.Formatter("%(message)s"))

    def filter(self, record: logging.LogRecord) -> bool:
        # Runs before the library's own filter, which reads these attributes.
        self._context.filter(record)
        fields = {**getattr(record, "json_fields", {}), **record_extras(record)}
        if record.exc_info:
            fields["@type"] = ERROR_EVENT_TYPE
        record.json_fields = fields
        if not hasattr(record, "http_request"):
            record.http_request = None
        return bool(super().filter(record))


def configure_logging(level: str, fmt: str, project: str | None = None) -> None:
    """Send every log record to stderr as `gcp`, `json` or `text`; safe to call more than once.

    `project` names the Google Cloud project in trace links (`projects/<project>/traces/<id>`).
    """
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_serving", False)]:
        root.removeHandler(old)
    # Standard streams only: App Engine's filesystem is read-only, and the platforms
    # collect stdout/stderr into Cloud Logging.
    handler: logging.Handler
    if fmt == "gcp":
        handler = GoogleCloudHandler(project)
    else:
        handler = LineHandler(sys.stderr)
        handler.addFilter(RequestLogContext(project))
        handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler._serving = True  # type: ignore[union-attr]
    root.addHandler(handler)
    # google-cloud-logging announces its version once through this logger and its own
    # handler; propagated to root as well, the line would appear twice.
    logging.getLogger("google.cloud.logging_v2.handlers.structured_log").propagate = False
    root.setLevel(level)
    # Neither format shows the thread or process name, and looking them up is a visible
    # part of every record's cost (one record per request).
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


class _RequestIds:
    """Unguessable request ids, drawn from the operating system 256 at a time.

    `os.urandom(16)` for each request was a system call a request (`getrandom`), which
    also releases the GIL for the request threads to hand around; one call now serves
    256. Taking an id is a `list.pop()`, atomic under the GIL, so threads never share
    one; two refilling at once only draw more. A forked child drops the ids it inherited,
    which its parent hands out too.
    """

    BATCH = 256

    def __init__(self) -> None:
        self._ids: list[str] = []
        os.register_at_fork(after_in_child=self._ids.clear)

    def take(self) -> str:
        try:
            return self._ids.pop()
        except IndexError:
            digits = os.urandom(16 * self.BATCH).hex()
            self._ids.extend([digits[start : start + 32] for start in range(0, len(digits), 32)])
            return self._ids.pop()


_REQUEST_IDS = _RequestIds()


def new_request_id() -> str:
    """A fresh, unguessable request id (32 hex digits)."""
    return _REQUEST_IDS.take()


def start_request() -> None:
    """Before-request step: note the start time, the request id and the trace."""
    context = g._get_current_object()
    setattr(context, _STARTED, time.perf_counter())
    # The headers straight from the environ, where `request.headers` reads them too: its
    # `get` raises and catches a KeyError inside Werkzeug for each header not sent, which
    # is most of them, most of the time.
    environ = request.environ
    incoming = environ.get(_REQUEST_ID_ENVIRON, "")
    setattr(context, _REQUEST_ID, incoming if _SANE_REQUEST_ID.match(incoming) else new_request_id())
    setattr(context, _TRACE, trace_context(environ.get("HTTP_TRACEPARENT", ""), environ.get(_CLOUD_TRACE_ENVIRON, "")))


def current_request_id() -> str | None:
    """The id of the request being served (None outside a request, or before it started)."""
    if not has_request_context():
        return None
    request_id: str | None = g._get_current_object().get(_REQUEST_ID)
    return request_id


def request_started() -> float | None:
    """`time.perf_counter()` when the request being served started."""
    started: float | None = g._get_current_object().get(_STARTED)
    return started


def tag_model(name: str) -> None:
    """Tag the request being served, its log lines and metrics, with the model it is for."""
    setattr(g._get_current_object(), _MODEL, name)


def current_model() -> str | None:
    """The model the request being served was tagged with (`tag_model`), if any."""
    model: str | None = g._get_current_object().get(_MODEL)
    return model


def tag_model_version(version: str) -> None:
    """Tag the request being served with the version of its model that answered it."""
    setattr(g._get_current_object(), _MODEL_VERSION, version)


def current_model_version() -> str | None:
    """The version the request being served was tagged with (`tag_model_version`), if any."""
    version: str | None = g._get_current_object().get(_MODEL_VERSION)
    return version


def request_logger(key_id: Callable[[], str | None], sample_rate: float = 1.0) -> Callable[[Response], Response]:
    """After-request step: echo the request id and log one line for the request.

    `key_id()` is the id of the API key that authenticated the request (serving/security/
    access.py), logged as `key_id`; never the secret. `sample_rate` is the fraction of
    successful requests (status below 400) that get the line (`REQUEST_LOG_SAMPLE_RATE`);
    refusals and errors always do. Every response gets `X-Request-Id` either way.
    """
    access_log = logging.getLogger("serving.request")
    sampled = 0.0 < sample_rate < 1.0
    skip_successes = sample_rate <= 0.0
    # A generator of its own: the global one's state is copied into every forked worker (they
    # would sample the same requests), and a handler that seeds it would steer the sampling.
    draw = random.SystemRandom().random

    def _finish(response: Response) -> Response:
        # This runs for every request: the request and `g` are looked up once each
        # (every attribute read through Flask's proxies costs a context lookup).
        req: Request = request._get_current_object()  # type: ignore[attr-defined]
        context = g._get_current_object()
        method = req.method
        status = response.status_code
        request_id = context.get(_REQUEST_ID) or new_request_id()
        response.headers[REQUEST_ID_HEADER] = request_id
        if status < 400 and (skip_successes or (sampled and draw() >= sample_rate)):
            return response
        level = logging.ERROR if status >= 500 else logging.INFO
        if not access_log.isEnabledFor(level):
            return response
        started = context.get(_STARTED)
        latency_ms = (time.perf_counter() - started) * 1000 if started is not None else None
        path = req.path
        fields: dict[str, Any] = {
            "request_id": request_id,
            "method": method,
            "path": path,
            "status": status,
            "latency_ms": round(latency_ms, 3) if latency_ms is not None else None,
            "http_request": _http_request(req, response, latency_ms),
        }
        model = context.get(_MODEL)
        if model:
            fields["model"] = model
            # Set by serving.http.model_version for a loaded model: which version answered.
            version = context.get(_MODEL_VERSION)
            if version:
                fields["model_version"] = version
        key = key_id()
        if key:
            fields["key_id"] = key
        # `makeRecord` + `handle` is what `Logger.log` does, minus walking the stack for
        # the caller's file and line: they are always this function's, known in advance.
        record = access_log.makeRecord(
            access_log.name, level, __file__, line, "%s %s %s", (method, path, status), None, "_finish", fields
        )
        access_log.handle(record)
        return response

    line = _finish.__code__.co_firstlineno
    return _finish


def _http_request(req: Request, response: Response, latency_ms: float | None) -> dict[str, Any]:
    """Cloud Logging's `HttpRequest` for `req` and its response."""
    environ = req.environ
    entry: dict[str, Any] = {
        "requestMethod": req.method,
        # Behind Google's front end ProxyFix has made this the https URL the client used.
        "requestUrl": req.url,
        "status": response.status_code,
        "protocol": environ.get("SERVER_PROTOCOL"),
        "remoteIp": req.remote_addr,
        "userAgent": environ.get("HTTP_USER_AGENT") or None,
        "referer": environ.get("HTTP_REFERER"),
    }
    content_length = req.content_length
    if content_length is not None:
        entry["requestSize"] = str(content_length)  # int64 fields are JSON strings
    if response.content_length is not None:
        entry["responseSize"] = str(response.content_length)
    if latency_ms is not None:
        entry["latency"] = f"{latency_ms / 1000:.6f}s"  # a protobuf Duration
    return {key: value for key, value in entry.items() if value is not None}
