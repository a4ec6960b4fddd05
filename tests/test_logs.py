"""Structured logs: one JSON object per line with severity, request id and model."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from serving.logs import JsonFormatter, TextFormatter


def _record(**extra: Any) -> logging.LogRecord:
    record = logging.makeLogRecord({"name": "t", "levelname": "WARNING", "levelno": 30, "msg": "hi %s", "args": ("x",)})
    record.__dict__.update(extra)
    return record


def test_json_formatter_emits_one_object_with_severity_and_extras() -> None:
    line = JsonFormatter().format(_record(model="Iris", request_id="r1"))

    entry = json.loads(line)
    assert "\n" not in line
    assert entry["severity"] == "WARNING"
    assert entry["message"] == "hi x"
    assert entry["model"] == "Iris"
    assert entry["request_id"] == "r1"


def test_json_formatter_puts_traceback_in_message() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record = _record(exc_info=sys.exc_info())

    entry = json.loads(JsonFormatter().format(record))

    assert "Traceback" in entry["message"]
    assert "ValueError: boom" in entry["message"]


def test_text_formatter_is_one_readable_line() -> None:
    line = TextFormatter().format(_record(model="Iris"))

    assert "WARNING" in line
    assert "hi x" in line
    assert "model=Iris" in line


def test_every_request_is_logged_with_its_id_status_and_model(client: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="serving.request")

    response = client.post("/v1/XXXModel", json={"name": "Leo"})

    (record,) = [r for r in caplog.records if r.name == "serving.request"]
    assert record.__dict__["request_id"] == response.headers["X-Request-Id"]
    assert record.__dict__["status"] == 200
    assert record.__dict__["model"] == "XXXModel"
    assert record.__dict__["latency_ms"] >= 0
