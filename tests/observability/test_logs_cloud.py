"""Cloud Logging: trace ids from request headers, httpRequest, and the gcp/json formats."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import g
from werkzeug.datastructures import Headers

from serving.observability import logs
from serving.observability.logs import (
    TraceContext,
    configure_logging,
    current_request_id,
    parse_trace_headers,
    start_request,
)
from tests.conftest import FIXTURE_HANDLERS

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PROJECT = "shop-prod"


# Tracing headers, and the trace each request belongs to.
TRACE_HEADERS = [
    ({"traceparent": f"00-{TRACE}-00f067aa0ba902b7-01"}, TraceContext(TRACE, "00f067aa0ba902b7", True)),
    ({"traceparent": f"00-{TRACE}-00f067aa0ba902b7-00"}, TraceContext(TRACE, "00f067aa0ba902b7", False)),
    ({"X-Cloud-Trace-Context": f"{TRACE}/1;o=1"}, TraceContext(TRACE, "0000000000000001", True)),
    ({"X-Cloud-Trace-Context": f"{TRACE.upper()}"}, TraceContext(TRACE, None, False)),
    ({"X-Cloud-Trace-Context": f"{TRACE}/0;o=0"}, TraceContext(TRACE, None, False)),
    (
        {"traceparent": f"00-{TRACE}-00f067aa0ba902b7-01", "X-Cloud-Trace-Context": f"{'a' * 32}/7;o=1"},
        TraceContext(TRACE, "00f067aa0ba902b7", True),
    ),
    ({"traceparent": f"ff-{TRACE}-00f067aa0ba902b7-01"}, None),
    ({"traceparent": f"00-{'0' * 32}-00f067aa0ba902b7-01"}, None),
    ({"traceparent": f"00-{TRACE}-{'0' * 16}-01"}, None),
    ({"X-Cloud-Trace-Context": "not-a-trace"}, None),
    ({"X-Cloud-Trace-Context": f"{TRACE}/1;o=1 junk"}, None),
    ({}, None),
]
TRACE_IDS = [
    "traceparent-sampled",
    "traceparent-unsampled",
    "cloud-trace-with-span",
    "cloud-trace-id-only",
    "cloud-trace-zero-span",
    "traceparent-wins",
    "traceparent-version-ff",
    "traceparent-zero-trace",
    "traceparent-zero-span",
    "cloud-trace-garbage",
    "cloud-trace-trailing",
    "none",
]


@pytest.mark.parametrize(("headers", "expected"), TRACE_HEADERS, ids=TRACE_IDS)
def test_parse_trace_headers(headers: dict[str, str], expected: TraceContext | None) -> None:
    assert parse_trace_headers(Headers(headers)) == expected


@pytest.mark.parametrize(("headers", "expected"), TRACE_HEADERS, ids=TRACE_IDS)
def test_a_request_starts_with_the_trace_its_headers_give(
    make_app: Any, headers: dict[str, str], expected: TraceContext | None
) -> None:
    app = make_app(handlers_dir=FIXTURE_HANDLERS / "ok")

    with app.test_request_context("/healthz", headers=headers):
        start_request()
        assert g.get(logs._TRACE) == expected


@pytest.mark.parametrize(
    ("sent", "kept"), [("req-123", True), ("", False), ("no spaces please", False), ("x" * 129, False)]
)
def test_a_request_keeps_the_sane_request_id_it_came_with(make_app: Any, sent: str, kept: bool) -> None:
    app = make_app(handlers_dir=FIXTURE_HANDLERS / "ok")

    with app.test_request_context("/healthz", headers={"X-Request-Id": sent}):
        start_request()
        request_id = current_request_id()

    assert (request_id == sent) is kept
    assert request_id


def test_trace_resource_name_names_the_project() -> None:
    trace = TraceContext(TRACE, None, False)

    assert trace.resource_name(PROJECT) == f"projects/{PROJECT}/traces/{TRACE}"
    assert trace.resource_name(None) == TRACE


def _entries(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@pytest.fixture(autouse=True)
def _restore_root_logging() -> Iterator[None]:
    root = logging.getLogger()
    saved = list(root.handlers), root.level
    yield
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


@pytest.mark.parametrize("fmt", ["gcp", "json"])
def test_request_log_carries_trace_http_request_model_and_id(
    make_app: Any, capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    client = make_app(log_format=fmt, google_cloud_project=PROJECT, proxy_hops=1).test_client()
    capsys.readouterr()

    body = b'{"name": "Leo"}'
    response = client.post(
        "/v1/XXXModel?lang=en",
        data=body,
        content_type="application/json",
        headers={
            "traceparent": f"00-{TRACE}-00f067aa0ba902b7-01",
            "X-Forwarded-Proto": "https",
            "X-Forwarded-For": "203.0.113.9",
            "User-Agent": "shop-widget/2.1",
            "Referer": "https://shop.example/page",
        },
    )

    (entry,) = [e for e in _entries(capsys.readouterr().err) if e.get("httpRequest")]
    assert entry["severity"] == "INFO"
    assert entry["logging.googleapis.com/trace"] == f"projects/{PROJECT}/traces/{TRACE}"
    assert entry["logging.googleapis.com/spanId"] == "00f067aa0ba902b7"
    assert entry["logging.googleapis.com/trace_sampled"] is True
    assert entry["request_id"] == response.headers["X-Request-Id"]
    assert entry["model"] == "XXXModel"
    assert entry["httpRequest"] == {
        "requestMethod": "POST",
        "requestUrl": "https://localhost/v1/XXXModel?lang=en",
        "status": 200,
        "protocol": "HTTP/1.1",
        "remoteIp": "203.0.113.9",
        "userAgent": "shop-widget/2.1",
        "referer": "https://shop.example/page",
        "requestSize": str(len(body)),
        "responseSize": str(len(response.data)),
        "latency": entry["httpRequest"]["latency"],
    }
    assert entry["httpRequest"]["latency"].endswith("s")
    assert float(entry["httpRequest"]["latency"][:-1]) >= 0


def test_gcp_format_is_google_cloud_loggings_structured_json(make_app: Any, capsys: pytest.CaptureFixture[str]) -> None:
    client = make_app(log_format="gcp", google_cloud_project=PROJECT).test_client()

    client.get("/healthz", headers={"X-Cloud-Trace-Context": f"{TRACE}/5;o=1"})

    entries = _entries(capsys.readouterr().err)
    # google-cloud-logging announces itself once per process, never twice.
    assert sum("logging.googleapis.com/diagnostic" in e for e in entries) <= 1
    (access,) = [e for e in entries if e.get("httpRequest")]
    assert access["logging.googleapis.com/labels"] == {"python_logger": "serving.request"}
    assert access["logging.googleapis.com/sourceLocation"]["function"] == "_finish"
    assert access["logging.googleapis.com/trace"] == f"projects/{PROJECT}/traces/{TRACE}"
    assert access["message"] == "GET /healthz 200"
    # Records outside a request carry no request fields.
    startup = [e for e in entries if e.get("message", "").startswith("model XXXModel ready")]
    assert startup
    assert startup[0]["httpRequest"] == {}
    assert startup[0]["logging.googleapis.com/trace"] == ""


@pytest.mark.parametrize("fmt", ["gcp", "json"])
def test_errors_carry_the_traceback_and_the_request_trace(
    make_app: Any, capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    handlers: Path = FIXTURE_HANDLERS / "ok"
    client = make_app(handlers_dir=handlers, log_format=fmt, google_cloud_project=PROJECT).test_client()
    crashing = "Crashing"  # tests/fixtures/handlers/ok/crashing.py: predict raises RuntimeError
    capsys.readouterr()

    response = client.post(f"/v1/{crashing}", json={}, headers={"traceparent": f"00-{TRACE}-00f067aa0ba902b7-01"})

    assert response.status_code == 500
    entries = _entries(capsys.readouterr().err)
    (error,) = [e for e in entries if "Traceback (most recent call last)" in e.get("message", "")]
    assert error["severity"] == "ERROR"
    # Error Reporting picks up entries of this type and groups them by the traceback.
    assert error["@type"] == "type.googleapis.com/google.devtools.clouderrorreporting.v1beta1.ReportedErrorEvent"
    assert error["logging.googleapis.com/trace"] == f"projects/{PROJECT}/traces/{TRACE}"
    assert error["request_id"] == response.json["request_id"]
    assert error["model"] == crashing
    # The client sees only the request id, never the traceback.
    assert "Traceback" not in response.get_data(as_text=True)


def test_text_format_stays_one_readable_line(make_app: Any, capsys: pytest.CaptureFixture[str]) -> None:
    client = make_app(log_format="text", google_cloud_project=PROJECT).test_client()
    capsys.readouterr()

    client.get("/healthz", headers={"traceparent": f"00-{TRACE}-00f067aa0ba902b7-01"})

    (line,) = [line for line in capsys.readouterr().err.splitlines() if "GET /healthz 200" in line]
    assert f"trace=projects/{PROJECT}/traces/{TRACE}" in line
    assert "httpRequest" not in line
    assert "http_request" not in line


def test_configure_logging_replaces_its_handler_instead_of_adding_one() -> None:
    configure_logging("INFO", "json")
    configure_logging("INFO", "gcp", PROJECT)
    configure_logging("INFO", "text")

    ours = [h for h in logging.getLogger().handlers if getattr(h, "_serving", False)]
    assert len(ours) == 1
