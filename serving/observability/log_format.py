"""How one log record becomes one line: JSON for Cloud Logging, or text for a terminal.

`JsonFormatter` writes what Cloud Logging reads from stdout/stderr (`severity`, the special
`httpRequest` and trace fields, tracebacks where Error Reporting looks); `TextFormatter` a
readable line; `LineHandler` writes each line with one `write()`. `serving.observability.logs`
puts them together and adds the request context.
"""

from __future__ import annotations

import json
import logging
import os
import time
import traceback
from typing import Any

import orjson

# Attributes every LogRecord has; anything else on a record came from `extra=` and is
# emitted as a field of its own.
STANDARD_ATTRS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}

# Record attributes that are Cloud Logging's special fields, named as google-cloud-logging's
# CloudLoggingFilter reads them from `extra=`, and the keys they take in a JSON line.
SPECIAL_FIELDS = {
    "http_request": "httpRequest",
    "trace": "logging.googleapis.com/trace",
    "span_id": "logging.googleapis.com/spanId",
    "trace_sampled": "logging.googleapis.com/trace_sampled",
}
# Attributes google-cloud-logging uses itself; never emitted as extras.
HANDLER_ATTRS = frozenset({"json_fields", "labels", "resource", "source_location"})
# Error Reporting groups any log entry of this type by the traceback in its message.
ERROR_EVENT_TYPE = "type.googleapis.com/google.devtools.clouderrorreporting.v1beta1.ReportedErrorEvent"


def record_extras(record: logging.LogRecord) -> dict[str, Any]:
    """What `extra=` (or the request context) added to `record`, special fields excluded."""
    return {
        key: value
        for key, value in record.__dict__.items()
        if key not in STANDARD_ATTRS
        and key not in SPECIAL_FIELDS
        and key not in HANDLER_ATTRS
        and not key.startswith("_")
    }


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
        entry.update(record_extras(record))
        for attr, key in SPECIAL_FIELDS.items():
            value = getattr(record, attr, None)
            if value is not None:
                entry[key] = value
        if record.exc_info:
            # Error Reporting groups errors by the traceback found in the message.
            entry["message"] += "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip()
            entry["@type"] = ERROR_EVENT_TYPE
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
        fields = record_extras(record)
        trace = getattr(record, "trace", None)
        if trace:
            fields["trace"] = trace
        extras = " ".join(f"{key}={value}" for key, value in fields.items())
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
