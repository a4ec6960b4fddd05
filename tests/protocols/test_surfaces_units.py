"""Unit tests of issue 22's surfaces: JSON text, tensor shapes, infer's types, Vary, the body deadline.

The same behaviour over real HTTP is in tests/protocols/test_hostile_surfaces.py.
"""

from __future__ import annotations

import io
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask, request
from flask.testing import FlaskClient

from serving.errors import MalformedJson, PayloadTooLarge, RequestTimeout, ValidationFailed
from serving.http.body import parse_json_bytes, read_body
from serving.http.body_deadline import BodyReadDeadline, _Watchdog
from serving.protocols.oip.wire import MAX_DIMENSION, MAX_SHAPE_RANK, parse_infer_request


@pytest.mark.parametrize(
    ("text", "path"),
    [
        (rb'{"input":"hi\ud800"}', "$.input"),
        (rb'{"a":[1,{"b":"\udc00x"}]}', "$.a[1].b"),
        (rb'{"\ud800":1}', "$ (a key)"),
        (rb'{"odd key":["\udbff"]}', '$["odd key"][0]'),
        (rb'"\ud800\ud800"', "$"),
    ],
    ids=["value", "nested", "key", "quoted-key", "two-highs"],
)
def test_a_lone_surrogate_is_malformed_json_naming_where(text: bytes, path: str) -> None:
    with pytest.raises(MalformedJson) as caught:
        parse_json_bytes(text)

    assert caught.value.details["path"] == path
    assert f"at {path} holds a lone UTF-16 surrogate" in caught.value.message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (rb'{"a":"\ud83d\ude00"}', {"a": "\N{GRINNING FACE}"}),
        (rb'{"a":"\\ud800"}', {"a": "\\ud800"}),  # an escaped backslash: plain text
        (rb'{"a":"\u00e9"}', {"a": "\N{LATIN SMALL LETTER E WITH ACUTE}"}),
    ],
    ids=["pair", "escaped-backslash", "bmp"],
)
def test_text_that_is_unicode_passes(text: bytes, expected: Any) -> None:
    assert parse_json_bytes(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"\xef\xbb\xbf\xef\xbb\xbf{}", "Unexpected UTF-8 BOM (decode using utf-8-sig) at line 1 column 1"),
        (b'{"a": NaN}', "NaN is not valid JSON"),
        (b"[-Infinity]", "-Infinity is not valid JSON"),
        (b'{"a": 1, "a": 2}', "duplicate key 'a'"),
        (b"[" + b"1" * 4301 + b"]", "integer with more than 4300 digits"),
        (b"[" * 100_000, "nested too deeply"),
        (b"\xff", "body is not valid UTF-8 (byte 0)"),
        (b'{"a": 1} x', "Extra data at line 1 column 10"),
        (b"  ", "Expecting value at line 1 column 3"),
        (b"\xef\xbb\xbf", "Expecting value at line 1 column 1"),
    ],
    ids=["two-boms", "nan", "infinity", "duplicate", "long-int", "deep", "not-utf8", "extra", "blank", "bom-only"],
)
def test_malformed_json_says_what_is_wrong(text: bytes, message: str) -> None:
    with pytest.raises(MalformedJson) as caught:
        parse_json_bytes(text)

    assert caught.value.message == f"Malformed JSON: {message}"


def test_one_bom_is_allowed() -> None:
    assert parse_json_bytes(b'\xef\xbb\xbf{"a": [1, {"b": null}]}') == {"a": [1, {"b": None}]}


@pytest.mark.parametrize(
    ("body", "length", "too_large"),
    [
        (b"x" * 9, None, False),
        (b"x" * 10, None, False),  # exactly the limit, and nothing after it
        (b"x" * 11, None, True),  # Werkzeug stops at the limit, silently: a 413, not a cut body
        (b"x" * 10, "10", False),
    ],
    ids=["chunked-under", "chunked-at-limit", "chunked-over", "with-length"],
)
def test_a_body_without_a_length_is_cut_at_the_limit_as_a_413(body: bytes, length: str | None, too_large: bool) -> None:
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = 10
    environ = {"wsgi.input": io.BytesIO(body), "wsgi.input_terminated": True}
    environ |= {"CONTENT_LENGTH": length} if length else {"HTTP_TRANSFER_ENCODING": "chunked"}

    with app.test_request_context("/", method="POST", environ_overrides=environ):
        if too_large:
            with pytest.raises(PayloadTooLarge):
                read_body(request)
        else:
            assert read_body(request) == body


def _infer(shape: str) -> bytes:
    return ('{"inputs":[{"name":"x","datatype":"FP64","shape":' + shape + ',"data":[1.0]}]}').encode()


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ("[" + ",".join(["1"] * (MAX_SHAPE_RANK + 1)) + "]", f"at most {MAX_SHAPE_RANK}"),
        ("[" + ",".join([str(2**62)] * 150_000) + "]", f"at most {MAX_SHAPE_RANK}"),
        (f"[{MAX_DIMENSION + 1}]", f"over {MAX_DIMENSION}"),
        (f"[{10**4000},{10**4000}]", f"over {MAX_DIMENSION}"),
        ("[]", "non-empty array"),
        ("[-1]", "integers >= 0"),
        (f"[{MAX_DIMENSION},{MAX_DIMENSION}]", "holds 4611686014132420609 elements, the data 1"),
    ],
    ids=["rank+1", "150000-dims", "dimension+1", "4000-digits", "empty", "negative", "largest-allowed"],
)
def test_shapes_are_bounded_before_multiplying(shape: str, message: str) -> None:
    started = time.monotonic()
    with pytest.raises(ValidationFailed) as caught:
        parse_infer_request(_infer(shape), None)

    assert time.monotonic() - started < 2
    assert "'x'" in caught.value.message
    assert message in caught.value.message


@pytest.fixture(scope="module")
def v2_client() -> FlaskClient:
    from serving.app import create_app
    from serving.config.settings import Settings
    from tests.conftest import FIXTURE_HANDLERS

    app = create_app(Settings(handlers_dir=FIXTURE_HANDLERS / "protocols", cors_origins=("https://a.example",)))
    app.testing = True
    return app.test_client()


_KINDS = b'{"inputs":[{"name":"text","datatype":"BYTES","shape":[1],"data":["hi"]}]}'


@pytest.mark.parametrize(
    ("content_type", "status"),
    [
        ("application/json", None),
        ("application/vnd.api+json", None),
        ("application/octet-stream", None),
        (None, None),
        ("text/plain", 415),
        ("application/x-www-form-urlencoded", 415),
        ("multipart/form-data; boundary=x", 415),
    ],
    ids=["json", "plus-json", "binary", "none", "text", "form", "multipart"],
)
def test_infer_refuses_the_types_a_form_can_send(v2_client: FlaskClient, content_type: str | None, status: int) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    response = v2_client.post("/v2/models/Kinds/infer", data=_KINDS, headers=headers)

    if status is None:
        assert response.status_code != 415, response.get_json()
    else:
        assert response.status_code == 415
        assert "application/json" in response.get_json()["error"]


@pytest.mark.parametrize("origin", ["https://a.example", "https://b.example", None], ids=["allowed", "other", "none"])
def test_named_origins_vary_on_origin(v2_client: FlaskClient, origin: str | None) -> None:
    response = v2_client.get("/v2/health/live", headers={"Origin": origin} if origin else {})

    assert "Origin" in response.vary


def test_any_origin_does_not_vary(client: FlaskClient) -> None:
    response = client.get("/healthz", headers={"Origin": "https://a.example"})

    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "Origin" not in response.vary


# --- the body deadline, with a socket pair standing in for gunicorn's connection ---


def _reading_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    body = environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"]))
    start_response("200 OK", [])
    return [body]


@pytest.fixture
def connection() -> Iterator[tuple[socket.socket, socket.socket]]:
    server, client = socket.socketpair()
    with server, client:
        yield server, client


def _call(server: socket.socket, length: int, timeout_s: float) -> Any:
    environ = {"gunicorn.socket": server, "wsgi.input": server.makefile("rb"), "CONTENT_LENGTH": str(length)}
    return BodyReadDeadline(_reading_app, timeout_s)(environ, lambda *_: None)


def test_a_stalled_body_times_out(connection: tuple[socket.socket, socket.socket]) -> None:
    server, client = connection
    client.sendall(b'{"sepal')
    started = time.monotonic()

    with pytest.raises(RequestTimeout, match="BODY_READ_TIMEOUT_S"):
        _call(server, 100, 0.3)
    assert 0.25 < time.monotonic() - started < 2
    server.sendall(b"answer")  # only reading was shut: the answer can still be written
    assert client.recv(6) == b"answer"


def test_a_trickling_body_cannot_stretch_the_deadline(connection: tuple[socket.socket, socket.socket]) -> None:
    server, client = connection
    stop = threading.Event()

    def trickle() -> None:
        while not stop.is_set():
            try:
                client.sendall(b" ")
            except OSError:
                return
            time.sleep(0.05)

    thread = threading.Thread(target=trickle)
    thread.start()
    started = time.monotonic()
    try:
        with pytest.raises(RequestTimeout):
            _call(server, 1000, 0.3)
    finally:
        stop.set()
        thread.join()
    assert time.monotonic() - started < 2


def test_a_body_that_arrives_in_time_leaves_the_connection_alone(
    connection: tuple[socket.socket, socket.socket],
) -> None:
    server, client = connection
    client.sendall(b"0123456789")

    assert _call(server, 10, 0.2) == [b"0123456789"]
    time.sleep(0.4)  # past the deadline: the next request on the connection still reads
    client.sendall(b"next")
    assert server.recv(4) == b"next"


def test_the_watchdog_is_woken_only_for_a_deadline_before_its_next_look(
    connection: tuple[socket.socket, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, _ = connection
    watchdog = _Watchdog()
    wakes: list[float] = []
    notify = watchdog._cond.notify
    monkeypatch.setattr(watchdog._cond, "notify", lambda *args: (wakes.append(time.monotonic()), notify(*args)))
    watchdog.watch(server, time.monotonic() + 60).active = False  # starts its thread

    for _ in range(50):  # requests whose bodies arrive: each a later deadline, soon cancelled
        time.sleep(0.002)  # time for the thread to look, had it been woken
        watchdog.watch(server, time.monotonic() + 60).active = False
    assert wakes == []

    server.settimeout(5)
    short = watchdog.watch(server, time.monotonic() + 0.1)  # before its next look: woken, and on time
    started = time.monotonic()
    assert server.recv(1) == b""  # the read side shut at the deadline
    assert short.fired
    assert time.monotonic() - started < 1
    assert len(wakes) <= 1


def test_without_a_socket_requests_pass_unchanged(make_app: Callable[..., Flask]) -> None:
    app = make_app(body_read_timeout_s=0.01)
    response = app.test_client().post("/v1/XXXModel", json={"name": "Leo"})

    assert response.status_code == 200
