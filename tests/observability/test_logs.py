"""Structured logs: one JSON object per line with severity, request id and model."""

from __future__ import annotations

import json
import logging
import os
import re
from typing import Any

import pytest

from serving.observability.log_format import JsonFormatter, TextFormatter


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


def test_line_handler_keeps_every_line_whole_under_concurrent_threads(tmp_path: Any) -> None:
    import threading

    from serving.observability.log_format import LineHandler

    path = tmp_path / "log.jsonl"
    with path.open("w") as stream:
        handler = LineHandler(stream)
        handler.setFormatter(JsonFormatter())
        logger = logging.Logger("concurrent")
        logger.addHandler(handler)

        def spam(n: int) -> None:
            for i in range(200):
                logger.info("thread %d line %d", n, i, extra={"payload": "x" * (100 * n)})

        threads = [threading.Thread(target=spam, args=(n,)) for n in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    entries = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(entries) == 16 * 200
    assert {entry["message"] for entry in entries} == {f"thread {n} line {i}" for n in range(16) for i in range(200)}


def test_line_handler_falls_back_for_streams_without_a_file_descriptor() -> None:
    import io

    from serving.observability.log_format import LineHandler

    stream = io.StringIO()
    handler = LineHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(lambda record: record.getMessage() != "hidden")
    logger = logging.Logger("captured")
    logger.addHandler(handler)

    logger.warning("shown")
    logger.warning("hidden")

    assert [json.loads(line)["message"] for line in stream.getvalue().splitlines()] == ["shown"]


def test_line_handler_applies_filters_on_the_fast_path(tmp_path: Any) -> None:
    from serving.observability.log_format import LineHandler

    path = tmp_path / "log.txt"
    with path.open("w") as stream:
        handler = LineHandler(stream)
        handler.setFormatter(TextFormatter())
        handler.addFilter(lambda record: record.getMessage() != "hidden")
        logger = logging.Logger("filtered")
        logger.addHandler(handler)
        logger.warning("shown")
        logger.warning("hidden")

    lines = path.read_text().splitlines()
    assert len(lines) == 1
    assert "shown" in lines[0]


def test_request_ids_are_32_hex_digits_and_never_repeat_across_threads() -> None:
    from concurrent.futures import ThreadPoolExecutor

    from serving.observability.logs import new_request_id

    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = list(pool.map(lambda _: new_request_id(), range(5000)))  # many refills of 256

    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[0-9a-f]{32}", request_id) for request_id in ids)


def test_a_forked_process_never_hands_out_its_parents_request_ids() -> None:
    from serving.observability.logs import new_request_id

    new_request_id()  # the parent now holds ids it has not handed out yet
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.write(writer, " ".join(new_request_id() for _ in range(300)).encode())
        finally:
            os._exit(0)
    os.close(writer)
    with os.fdopen(reader) as pipe:
        child_ids = set(pipe.read().split())
    os.waitpid(pid, 0)
    parent_ids = {new_request_id() for _ in range(300)}

    assert len(child_ids) == 300
    assert not child_ids & parent_ids
