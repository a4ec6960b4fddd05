"""Issue 24's hot path: the request log sampled where Google logs requests, one send per small
response, and a handler's `prepare` stage run on the request's thread, outside the batch."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from flask import Flask, session
from gunicorn.config import Config

from serving.config.fields import SettingsError
from serving.config.settings import Settings
from serving.http.application import NoSessions, ServingFlask
from serving.platform.detect import request_log_sample_rate
from serving.platform.gunicorn_response import MAX_COALESCED_BODY, SingleSendResponse, use_single_send
from serving.platform.gunicorn_worker import _body_read_to_its_end
from tests.conftest import FIXTURE_HANDLERS

# --- the request log line ---


def _request_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == "serving.request"]


@pytest.mark.parametrize(
    ("environ", "rate"),
    [
        ({}, 1.0),
        ({"GAE_ENV": "standard", "GAE_SERVICE": "default"}, 0.0),
        ({"K_SERVICE": "api"}, 0.0),
        ({"K_SERVICE": "api", "FUNCTION_TARGET": "main"}, 0.0),
        ({"FUNCTION_TARGET": "main"}, 1.0),  # functions-framework run locally
        ({"K_SERVICE": "api", "REQUEST_LOG_SAMPLE_RATE": "0.25"}, 0.25),
        ({"REQUEST_LOG_SAMPLE_RATE": "0"}, 0.0),
        ({"K_SERVICE": "api", "REQUEST_LOG_SAMPLE_RATE": "auto"}, 0.0),
    ],
    ids=["local", "app-engine", "cloud-run", "cloud-functions", "functions-framework", "set", "off", "auto"],
)
def test_request_log_rate_follows_the_platform(environ: dict[str, str], rate: float) -> None:
    assert request_log_sample_rate(Settings.from_env(environ)) == rate


@pytest.mark.parametrize("raw", ["2", "-0.1", "half", "nan"])
def test_a_bad_request_log_rate_names_the_variable(raw: str) -> None:
    with pytest.raises(SettingsError, match="REQUEST_LOG_SAMPLE_RATE"):
        Settings.from_env({"REQUEST_LOG_SAMPLE_RATE": raw})


def test_without_the_line_a_request_still_has_its_id_and_errors_are_logged(
    make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    client = make_app(handlers_dir=FIXTURE_HANDLERS / "ok", request_log_sample_rate=0.0).test_client()

    ok = client.post("/v1/Echo", json={"text": "hi"})
    assert ok.status_code == 200
    assert len(ok.headers["X-Request-Id"]) == 32
    assert _request_lines(caplog) == []

    refused = client.post(
        "/v1/Echo", json={"nope": 1}, headers={"traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01"}
    )
    missing = client.post("/v1/NoSuchModel", json={"text": "hi"})
    lines = _request_lines(caplog)
    assert [line.status for line in lines] == [refused.status_code, missing.status_code] == [400, 404]  # type: ignore[attr-defined]
    # The lines that remain carry the correlation ids.
    assert lines[0].request_id == refused.headers["X-Request-Id"]  # type: ignore[attr-defined]


def test_a_sampled_request_log_keeps_about_that_fraction(
    make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="serving.request")
    client = make_app(handlers_dir=FIXTURE_HANDLERS / "ok", request_log_sample_rate=0.5).test_client()
    for _ in range(400):
        assert client.post("/v1/Echo", json={"text": "hi"}).status_code == 200
    assert 120 < len(_request_lines(caplog)) < 280


def test_every_request_is_logged_locally(make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="serving.request")
    client = make_app(handlers_dir=FIXTURE_HANDLERS / "ok").test_client()
    for _ in range(20):
        client.post("/v1/Echo", json={"text": "hi"})
    assert len(_request_lines(caplog)) == 20


# --- one send for headers and a small body ---


class _Socket:
    def __init__(self) -> None:
        self.sends: list[bytes] = []

    def sendall(self, data: bytes) -> None:
        self.sends.append(bytes(data))


def _respond(method: str, status: str, headers: list[tuple[str, str]], chunks: list[bytes]) -> list[bytes]:
    request = SimpleNamespace(version=(1, 1), method=method, headers=[], should_close=lambda: False)
    sock = _Socket()
    response = SingleSendResponse(request, sock, Config())
    response.start_response(status, headers)
    for chunk in chunks:
        response.write(chunk)
    response.close()
    return sock.sends


def test_headers_and_a_small_body_leave_in_one_send() -> None:
    body = b'{"result": "Hello Ada"}'
    sends = _respond(
        "POST", "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))], [body]
    )

    assert len(sends) == 1
    head, _, sent_body = sends[0].partition(b"\r\n\r\n")
    assert sent_body == body
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Content-Length: 23" in head


@pytest.mark.parametrize(
    ("method", "status", "headers", "chunks", "sends"),
    [
        ("POST", "200 OK", [("Content-Length", str(MAX_COALESCED_BODY + 1))], [b"x" * (MAX_COALESCED_BODY + 1)], 2),
        ("POST", "200 OK", [], [b"streamed", b"more"], 4),  # chunked: headers, 2 chunks, terminator
        ("HEAD", "200 OK", [("Content-Length", "10")], [b""], 1),  # no body may be sent: headers alone
        ("POST", "204 No Content", [], [], 1),
        ("POST", "200 OK", [("Content-Length", "5")], [], 1),  # declared but never written: headers at close
    ],
    ids=["large-body", "chunked", "head", "no-content", "body-never-written"],
)
def test_other_responses_go_out_as_gunicorn_sends_them(
    method: str, status: str, headers: list[tuple[str, str]], chunks: list[bytes], sends: int
) -> None:
    sent = _respond(method, status, headers, chunks)
    assert len(sent) == sends
    assert sent[0].startswith(b"HTTP/1.1 " + status.encode())
    assert b"\r\n\r\n" in sent[0]


@pytest.mark.parametrize(
    ("version", "should_close", "upgrade", "chunked"),
    [
        ((1, 1), False, False, False),
        ((1, 0), True, False, False),
        ((1, 1), False, True, False),
        ((1, 1), False, False, True),
    ],
    ids=["keep-alive", "close", "upgrade", "chunked"],
)
def test_the_default_headers_are_gunicorns_with_its_date(
    monkeypatch: pytest.MonkeyPatch, version: tuple[int, int], should_close: bool, upgrade: bool, chunked: bool
) -> None:
    import gunicorn.http.wsgi as wsgi

    monkeypatch.setattr("time.time", lambda: 1_796_481_000.25)  # the same second for both
    request = SimpleNamespace(version=version, method="POST", headers=[], should_close=lambda: should_close)
    response = SingleSendResponse(request, _Socket(), Config())
    response.start_response("200 OK", [("Content-Type", "application/json")])
    response.upgrade, response.chunked = upgrade, chunked

    ours = response.default_headers()

    assert ours == wsgi.Response.default_headers(response)
    assert "Date: Sat, 05 Dec 2026 14:30:00 GMT\r\n" in ours


def test_the_date_changes_with_the_second(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1_796_481_000.9]
    monkeypatch.setattr("time.time", lambda: now[0])
    request = SimpleNamespace(version=(1, 1), method="GET", headers=[], should_close=lambda: False)
    response = SingleSendResponse(request, _Socket(), Config())
    response.start_response("200 OK", [])

    first = response.default_headers()[2]
    now[0] += 0.2

    assert response.default_headers()[2] == "Date: Sat, 05 Dec 2026 14:30:01 GMT\r\n" != first


class _Wire:
    """A socket whose peer sent `data` and nothing more."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def recv(self, size: int) -> bytes:
        chunk, self._data = self._data[:size], self._data[size:]
        return chunk


def _message(raw: bytes) -> Any:
    from gunicorn.http.parser import RequestParser

    return next(RequestParser(Config(), _Wire(raw), ("127.0.0.1", 1)))


_POST = b"POST /v1/XXXModel HTTP/1.1\r\nHost: h\r\nContent-Length: 15\r\n\r\n" + b'{"name": "Ada"}'
_CHUNKED = b"POST /v1/XXXModel HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"


@pytest.mark.parametrize(
    ("raw", "read", "drained"),
    [
        (_POST, None, True),  # read to the end: nothing to drain
        (_POST, 3, False),
        (_POST, 0, False),  # not read at all
        (b"GET /healthz HTTP/1.1\r\nHost: h\r\n\r\n", 0, True),  # no body
        (_CHUNKED, None, False),  # chunked: gthread's drain decides
    ],
    ids=["read-whole", "read-part", "unread", "no-body", "chunked"],
)
def test_only_a_body_read_to_its_end_skips_gthreads_drain(raw: bytes, read: int | None, drained: bool) -> None:
    message = _message(raw)
    if read != 0:
        message.body.read(read)

    assert _body_read_to_its_end(message) is drained


def test_use_single_send_makes_it_gunicorns_response(monkeypatch: pytest.MonkeyPatch) -> None:
    import gunicorn.http.wsgi as wsgi

    monkeypatch.setattr(wsgi, "Response", wsgi.Response)  # restored after the test
    use_single_send()
    assert wsgi.Response is SingleSendResponse


# --- prepare: per-request work outside the batch ---

PREPARING_HANDLER = '''
"""Doubles numbers; prepares each on the request's thread."""
import threading

from serving.contract import InvalidInput

NAME = "Doubler"
INPUT_SCHEMA = {"type": "object", "properties": {"x": {"type": "number"}}, "required": ["x"]}
BATCH = {"max_batch_size": 8, "max_latency_ms": 50}
SEEN = {"prepared_on": set(), "batches": []}


def prepare(model, payload):
    if payload["x"] < 0:
        raise InvalidInput("x must not be negative")
    SEEN["prepared_on"].add(threading.current_thread().name)
    return ("prepared", payload["x"])


def predict(model, prepared):
    assert prepared[0] == "prepared"
    return {"y": 2 * prepared[1]}


def predict_batch(model, prepared):
    SEEN["batches"].append(list(prepared))
    return [predict(model, item) for item in prepared]
'''


@pytest.fixture
def preparing_app(make_app: Callable[..., Flask], tmp_path: Path) -> Flask:
    (tmp_path / "doubler.py").write_text(PREPARING_HANDLER)
    return make_app(handlers_dir=tmp_path, batching=True)


def _seen() -> dict[str, Any]:
    """This test's handler module's record of what it was given (each test writes its own file)."""
    import sys

    modules = [module for module in list(sys.modules.values()) if getattr(module, "NAME", None) == "Doubler"]
    return modules[-1].SEEN  # type: ignore[no-any-return]


def test_prepare_runs_on_the_request_thread_and_predict_gets_its_result(preparing_app: Flask) -> None:
    client = preparing_app.test_client()
    assert client.post("/v1/Doubler", json={"x": 4}).get_json()["result"] == {"y": 8}

    refused = client.post("/v1/Doubler", json={"x": -1})
    assert refused.status_code == 400
    assert refused.get_json()["message"] == "x must not be negative"
    assert _seen()["prepared_on"] == {threading.current_thread().name}


def test_a_batch_gathers_prepared_inputs(preparing_app: Flask) -> None:
    results: dict[int, Any] = {}
    start = threading.Barrier(8)

    def call(x: int) -> None:
        client = preparing_app.test_client()
        start.wait()
        results[x] = client.post("/v1/Doubler", json={"x": x}).get_json()["result"]["y"]

    threads = [threading.Thread(target=call, args=(x,), name=f"client-{x}") for x in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert results == {x: 2 * x for x in range(8)}
    seen = _seen()
    assert seen["prepared_on"] == {f"client-{x}" for x in range(8)}  # none on the batcher's thread
    assert all(item[0] == "prepared" for batch in seen["batches"] for item in batch)


def test_many_rows_are_prepared_each_and_a_bad_one_is_named(preparing_app: Flask) -> None:
    client = preparing_app.test_client()
    good = client.post("/v1/models/Doubler:predict", json={"instances": [{"x": 1}, {"x": 3}]})
    bad = client.post("/v1/models/Doubler:predict", json={"instances": [{"x": 1}, {"x": -1}, {"x": 3}]})

    assert good.get_json()["predictions"] == [{"y": 2}, {"y": 6}]
    assert bad.status_code == 400
    assert bad.get_json()["message"] == "instances[1]: x must not be negative"
    assert bad.get_json()["index"] == 1


# --- Flask without the per-request work this API never needs ---


def test_the_app_is_built_on_serving_flask(make_app: Callable[..., Flask]) -> None:
    app = make_app(handlers_dir=FIXTURE_HANDLERS / "ok")

    assert isinstance(app, ServingFlask)
    assert isinstance(app.session_interface, NoSessions)


def test_ensure_sync_is_flasks_answer_worked_out_once_per_function(monkeypatch: pytest.MonkeyPatch) -> None:
    app = ServingFlask(__name__)
    asked: list[Callable[..., Any]] = []
    flasks_own = Flask.ensure_sync

    def counting(self: Flask, func: Callable[..., Any]) -> Callable[..., Any]:
        asked.append(func)
        return flasks_own(self, func)

    monkeypatch.setattr(Flask, "ensure_sync", counting)

    def hook() -> None:
        """A plain function, as every hook and view here is."""

    assert [app.ensure_sync(hook) for _ in range(3)] == [hook] * 3
    assert asked == [hook]


def test_an_async_view_fails_as_flask_says_without_asgiref() -> None:
    async def view() -> str:
        return "never"

    with pytest.raises(RuntimeError) as flasks:
        Flask(__name__).ensure_sync(view)
    with pytest.raises(RuntimeError) as ours:
        ServingFlask(__name__).ensure_sync(view)

    assert str(ours.value) == str(flasks.value)


def _session_app(app_class: type[Flask]) -> Flask:
    app = app_class(__name__)
    app.testing = True  # a view's exception reaches the test

    @app.get("/read")
    def read() -> str:
        return f"{dict(session)} {session.get('user')} {session.new} {session.permanent}"

    @app.get("/write")
    def write() -> str:
        session["user"] = "leo"
        return "written"

    return app


def test_sessions_read_empty_and_refuse_writes_as_flasks_own_without_a_secret_key() -> None:
    flask, ours = (_session_app(app_class).test_client() for app_class in (Flask, ServingFlask))

    for client in (flask, ours, ours):  # ours twice: the shared session stays empty
        read = client.get("/read")
        assert (read.status_code, read.headers.to_wsgi_list(), read.data) == (
            200,
            [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", "19")],
            b"{} None False False",
        )
    with pytest.raises(RuntimeError) as flasks_refusal:
        flask.get("/write")
    with pytest.raises(RuntimeError) as our_refusal:
        ours.get("/write")
    assert str(our_refusal.value) == str(flasks_refusal.value)


@pytest.mark.parametrize(
    ("status", "headers", "body", "as_they_are"),
    [
        (200, {"Content-Type": "application/json", "X-Request-Id": "r"}, b"{}", True),
        (404, {"Content-Type": "text/plain"}, b"not found", True),
        (201, {"Location": "/v1/jobs/j1"}, b"{}", False),  # made absolute
        (202, {"Content-Location": "/v1/jobs/\u00e9"}, b"{}", False),  # IRI to URI
        (204, {"Access-Control-Allow-Origin": "*"}, b"", False),  # length removed
        (304, {"Content-Type": "application/json", "ETag": "x"}, b"", False),  # entity headers removed
        (101, {"Upgrade": "h2c"}, b"", False),
    ],
)
def test_the_headers_sent_are_flasks(status: int, headers: dict[str, str], body: bytes, as_they_are: bool) -> None:
    from flask import Response
    from werkzeug.test import EnvironBuilder

    from serving.http.application import ServingResponse

    environ = EnvironBuilder(path="/v1/XXXModel", base_url="https://api.example.com/").get_environ()
    flasks, ours = (
        response_class(body, status=status, headers=headers) for response_class in (Response, ServingResponse)
    )
    sent = ours.get_wsgi_headers(environ)

    assert sent.to_wsgi_list() == flasks.get_wsgi_headers(environ).to_wsgi_list()
    assert ours.headers.to_wsgi_list() == flasks.headers.to_wsgi_list()  # the response's own are untouched
    assert (sent is ours.headers) is as_they_are


def test_a_streamed_answer_without_a_length_gets_flasks_headers() -> None:
    from flask import Response
    from werkzeug.test import EnvironBuilder

    from serving.http.application import ServingResponse

    environ = EnvironBuilder(path="/").get_environ()
    flasks, ours = (response_class(iter([b"a", b"b"])) for response_class in (Response, ServingResponse))
    assert "Content-Length" not in ours.headers
    assert ours.get_wsgi_headers(environ).to_wsgi_list() == flasks.get_wsgi_headers(environ).to_wsgi_list()


def test_the_app_answers_with_serving_responses(make_app: Callable[..., Flask]) -> None:
    from serving.http.application import ServingResponse

    app = make_app(handlers_dir=FIXTURE_HANDLERS / "ok")
    assert app.response_class is ServingResponse
