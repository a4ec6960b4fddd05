"""Hostile input over real HTTP against the real gunicorn: never a 5xx, never HTML, never a hang.

The Flask test client cannot show what gunicorn itself does with a malformed request, a
lying Content-Length, a slow client or an oversized header, so each case here is raw bytes
on a socket to gunicorn started with gunicorn.conf.py (2 workers x 8 threads).
"""

from __future__ import annotations

import base64
import json
import socket
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.rawhttp import RawResponse, exchange, read_response, request_bytes
from tests.servers import PROJECT_ROOT, ServerProcess, free_port, gunicorn_command, running_server

pytestmark = pytest.mark.e2e

LIMIT = 1024 * 1024  # MAX_REQUEST_BYTES for this server
FIELD_LIMIT = 256 * 1024  # FORM_MAX_FIELD_BYTES for this server
ALLOWED_ORIGIN = "https://shop.example"
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    port = free_port()
    env = {
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "GUNICORN_WORKERS": "2",
        "GUNICORN_THREADS": "8",
        "MAX_REQUEST_BYTES": str(LIMIT),
        "CORS_ORIGINS": ALLOWED_ORIGIN,
        "FORM_MAX_FIELD_BYTES": str(FIELD_LIMIT),
    }
    log = Path(tmp_path_factory.mktemp("hostile")) / "gunicorn.log"
    with running_server(gunicorn_command(), port=port, log_path=log, env=env) as process:
        yield process


def assert_clean_error(response: RawResponse, statuses: set[int]) -> Any:
    """The response is one of `statuses`, JSON with a message, and leaks nothing."""
    text = response.body.decode("utf-8", "replace")
    assert response.status in statuses, f"{response.status}: {text[:300]}"
    assert response.status < 500
    assert response.headers.get("content-type", "").startswith("application/json"), response.raw_head
    assert "<html" not in text.lower()
    for leak in ("Traceback", "/work/", "site-packages", ".py", "gunicorn/", "Werkzeug/", "Python/"):
        assert leak not in text
        assert leak not in response.raw_head.decode("latin-1")
    assert response.headers.get("server", "model-serving") == "model-serving"  # gunicorn's own errors send none
    body = json.loads(text)
    assert body["message"]
    return body


def _post(path: str, body: bytes, headers: dict[str, str] | None = None) -> bytes:
    return request_bytes("POST", path, body, headers if headers is not None else JSON)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png(width: int, height: int, rows: bytes) -> bytes:
    """A grayscale PNG declaring `width` x `height`, whatever `rows` really holds."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(rows, 9))
        + _png_chunk(b"IEND", b"")
    )


def _digit_request(image: bytes) -> bytes:
    return _post("/v1/Digits", json.dumps({"image": base64.b64encode(image).decode()}).encode())


# 4000 x 4000 of blank pixels: 16 MB decoded from a few KB, just under Digits' pixel limit.
_BLANK_ROWS = (b"\x00" + b"\xff" * 4000) * 4000
IMAGE_BOMBS = [
    pytest.param(_digit_request(_png(100_000, 100_000, b"\x00" * 64)), {400}, id="png-declares-1e10-pixels"),
    pytest.param(_digit_request(_png(65_535, 1, b"\x00" * 64)), {400}, id="png-too-wide"),
    pytest.param(_digit_request(_png(4000, 4000, _BLANK_ROWS)), {200, 400}, id="png-16-megapixels-from-kb"),
    pytest.param(_digit_request(_png(64, 64, b"\x00" * 10)), {400}, id="png-truncated-data"),
    pytest.param(_digit_request(b"GIF89a" + b"\x00" * 64), {400}, id="gif"),
    pytest.param(_digit_request(b"\xff\xd8\xff" + b"\x00" * 64), {400}, id="jpeg-header-only"),
]


@pytest.mark.parametrize(("raw", "statuses"), IMAGE_BOMBS)
def test_image_bombs_are_refused_cleanly(server: ServerProcess, raw: bytes, statuses: set[int]) -> None:
    response = exchange(server.port, raw, timeout=60)

    if response.status != 200:
        assert assert_clean_error(response, statuses)["code"] == "invalid_input"
    assert response.status in statuses


HOSTILE = [
    pytest.param(_post("/v1/XXXModel", b"", {}), {400}, "no_json", id="empty-body-no-type"),
    pytest.param(_post("/v1/XXXModel", b""), {400}, "no_json", id="empty-body-json-type"),
    pytest.param(_post("/v1/XXXModel", b'{"name": '), {400}, "malformed_json", id="invalid-json"),
    pytest.param(_post("/v1/XXXModel", b"[1, 2]"), {400}, "invalid_input", id="array-not-object"),
    pytest.param(_post("/v1/XXXModel", b'"Leo"'), {400}, "invalid_input", id="string-not-object"),
    pytest.param(_post("/v1/XXXModel", b"null"), {400}, "invalid_input", id="null"),
    pytest.param(
        _post("/v1/XXXModel", b'{"name": "Leo"}', {"Content-Type": "text/plain"}), {400}, "no_json", id="wrong-type"
    ),
    pytest.param(_post("/v1/XXXModel", b'{"name": "Leo"}', {}), {400}, "no_json", id="missing-type"),
    pytest.param(
        _post("/v1/XXXModel", b'{"name": "Leo"}', {"Content-Type": "application/x-www-form-urlencoded"}),
        {400},
        "no_json",
        id="form-type",
    ),
    pytest.param(_post("/v1/XXXModel", b'{"name": "\xff\xfe\xc0"}'), {400}, "malformed_json", id="non-utf8"),
    pytest.param(_post("/v1/XXXModel", b"[" * 100_000), {400}, "malformed_json", id="deep-nesting-arrays"),
    pytest.param(_post("/v1/XXXModel", b'{"a":' * 100_000), {400}, "malformed_json", id="deep-nesting-objects"),
    pytest.param(_post("/v1/XXXModel", b'{"n": ' + b"9" * 1_000_000 + b"}"), {400}, "malformed_json", id="1e6-digits"),
    pytest.param(_post("/v1/XXXModel", b'{"name": NaN}'), {400}, "malformed_json", id="nan"),
    pytest.param(_post("/v1/XXXModel", b'{"name": -Infinity}'), {400}, "malformed_json", id="infinity"),
    pytest.param(_post("/v1/XXXModel", b'{"name": 1e999}'), {400}, "invalid_input", id="float-overflow"),
    pytest.param(_post("/v1/XXXModel", b'{"name": "a", "name": "b"}'), {400}, "malformed_json", id="duplicate-keys"),
    pytest.param(
        _post("/v1/XXXModel", b'{"name": [' + b"1," * 200_000 + b"1]}"), {400}, "invalid_input", id="huge-array"
    ),
    pytest.param(
        _post("/v1/XXXModel", b'{"name": "x", "pad": "' + b"y" * 900_000 + b'"}'), {200}, None, id="huge-string-ok"
    ),
    pytest.param(_post("/v1/XXXModel", b"{}" + b" " * (LIMIT + 10)), {413}, "payload_too_large", id="body-over-limit"),
    pytest.param(_post("/v1/..%2F..%2Fetc%2Fpasswd", b"{}"), {404}, None, id="traversal-encoded-model"),
    pytest.param(_post("/v1/../../etc/passwd", b"{}"), {404}, None, id="traversal-raw-model"),
    pytest.param(request_bytes("GET", "/v1/models/..%2f..%2fetc%2fpasswd"), {404}, None, id="traversal-describe"),
    pytest.param(request_bytes("GET", "/v1/models/%00"), {404}, None, id="nul-in-model"),
    pytest.param(request_bytes("GET", "/v1/jobs/..%2F..%2Fetc%2Fpasswd"), {404, 405}, None, id="traversal-job-id"),
    pytest.param(request_bytes("GET", "/v1/jobs/%2e%2e%2f%2e%2e%2fetc"), {404, 405}, None, id="traversal-job-dots"),
    pytest.param(request_bytes("GET", "/static/..%2F..%2Fmain.py"), {404}, None, id="traversal-static"),
    pytest.param(request_bytes("BREW", "/v1/XXXModel"), {405}, "method_not_allowed", id="unknown-method"),
    pytest.param(
        request_bytes("GET", "/v1/XXXModel", headers={"X-Big": "a" * 9000}), {431, 400}, None, id="header-too-big"
    ),
    pytest.param(
        request_bytes("GET", "/healthz", headers={f"X-H{i}": "v" for i in range(150)}),
        {431, 400},
        None,
        id="too-many-headers",
    ),
    pytest.param(request_bytes("GET", "/v1/" + "a" * 10_000), {414, 400}, None, id="request-line-too-long"),
    pytest.param(b"GARBAGE\r\n\r\n", {400}, None, id="not-http"),
    pytest.param(
        b"POST /v1/XXXModel HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\n{}   ",
        {400},
        None,
        id="two-content-lengths",
    ),
    pytest.param(
        b"POST /v1/XXXModel HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", {400}, None, id="negative-length"
    ),
]


@pytest.mark.parametrize(("raw", "statuses", "code"), HOSTILE)
def test_hostile_request_gets_a_clean_json_answer(
    server: ServerProcess, raw: bytes, statuses: set[int], code: str | None
) -> None:
    response = exchange(server.port, raw, timeout=20)

    if response.status == 200:
        assert response.json()["result"] == "Hello, x!"
        return
    body = assert_clean_error(response, statuses)
    if code is not None:
        assert body["code"] == code


_SAMPLE = (PROJECT_ROOT / "models" / "digits" / "samples" / "3.png").read_bytes()


def _form(*parts: tuple[str, bytes], boundary: bytes = b"B0undary", close: bool = True) -> bytes:
    body = b"".join(
        b"--%s\r\nContent-Disposition: form-data; %s\r\n\r\n%s\r\n" % (boundary, h.encode(), d) for h, d in parts
    )
    return body + (b"--%s--\r\n" % boundary if close else b"")


def _form_post(path: str, body: bytes, content_type: str = "multipart/form-data; boundary=B0undary") -> bytes:
    return _post(path, body, {"Content-Type": content_type})


_IMAGE = ('name="image"; filename="3.png"\r\nContent-Type: image/png', _SAMPLE)
# (request, statuses, code, path): each a clean JSON 4xx naming the field where there is one.
HOSTILE_UPLOADS = [
    pytest.param(
        _form_post("/v1/Digits", _form(_IMAGE), "multipart/form-data"),
        {400},
        "malformed_form",
        "Content-Type",
        id="no-boundary",
    ),
    pytest.param(
        _form_post("/v1/Digits", _form(_IMAGE), "multipart/form-data; boundary=" + "x" * 80),
        {400},
        "malformed_form",
        "Content-Type",
        id="boundary-too-long",
    ),
    pytest.param(
        _form_post("/v1/Digits", _form(_IMAGE, boundary=b"other")),
        {400},
        "malformed_form",
        None,
        id="boundary-not-in-body",
    ),
    pytest.param(
        _form_post("/v1/Digits", _form(_IMAGE)[:-40]), {400}, "malformed_form", "$.image", id="truncated-in-file"
    ),
    pytest.param(_form_post("/v1/Digits", b""), {400}, "malformed_form", None, id="empty-form"),
    pytest.param(
        _form_post("/v1/XXXModel", _form(('name="name"', b"a"), ('name="name"', b"b"))),
        {400},
        "duplicate_field",
        "$.name",
        id="duplicate-field",
    ),
    pytest.param(
        _form_post("/v1/XXXModel", _form(('name="name"; filename="n.txt"', b"Leo"))),
        {400},
        "unexpected_file",
        "$.name",
        id="file-for-text-field",
    ),
    pytest.param(
        _form_post("/v1/Digits", _form(_IMAGE, ('name="colour"', b"red"))),
        {400},
        "unknown_field",
        "$.colour",
        id="unknown-field",
    ),
    pytest.param(
        _form_post(
            "/v1/Iris",
            _form(
                ('name="sepal_length"', b"{"),
            ),
        ),
        {400},
        "invalid_input",
        None,
        id="iris-text-not-a-number",
    ),
    pytest.param(
        _form_post("/v1/XXXModel", _form(('name="name"', b"x" * (FIELD_LIMIT + 1)))),
        {413},
        "payload_too_large",
        "$.name",
        id="huge-text-part",
    ),
    pytest.param(
        _form_post("/v1/XXXModel", _form(*((f'name="f{i}"', b"x") for i in range(5000)))),
        {413},
        "too_many_parts",
        None,
        id="thousands-of-parts",
    ),
    pytest.param(
        _form_post("/v1/Digits", _form(('name="image"; filename="a"', b"x" * (LIMIT + 100)))),
        {413},
        "payload_too_large",
        None,
        id="file-over-limit",
    ),
    pytest.param(
        _post("/v1/Digits", _SAMPLE, {"Content-Type": "text/plain"}), {400}, "no_json", None, id="raw-wrong-media-type"
    ),
    pytest.param(
        _post("/v1/XXXModel", _SAMPLE, {"Content-Type": "image/png"}),
        {400},
        "no_json",
        None,
        id="raw-image-to-text-model",
    ),
    pytest.param(
        _post("/v1/Digits", b"", {"Content-Type": "image/png"}), {400}, "empty_body", "$.image", id="raw-empty"
    ),
    pytest.param(
        _post("/v1/Digits", b"GIF89a" + b"\x00" * 64, {"Content-Type": "image/gif"}),
        {400},
        "invalid_input",
        None,
        id="raw-gif",
    ),
]


@pytest.mark.parametrize(("raw", "statuses", "code", "path"), HOSTILE_UPLOADS)
def test_hostile_uploads_get_a_clean_json_answer_naming_the_field(
    server: ServerProcess, raw: bytes, statuses: set[int], code: str, path: str | None
) -> None:
    body = assert_clean_error(exchange(server.port, raw, timeout=20), statuses)

    assert body["code"] == code
    if path is not None:
        assert body["path"] == path


def test_a_form_cut_short_by_a_client_that_goes_away_is_a_400(server: ServerProcess) -> None:
    body = _form(_IMAGE)
    head = _form_post("/v1/Digits", body).split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"

    response = exchange(server.port, head + body[: len(body) // 2], timeout=20, half_close=True)

    assert assert_clean_error(response, {400})["code"] == "malformed_form"


def test_a_raw_image_body_answers_the_digit(server: ServerProcess) -> None:
    response = exchange(server.port, _post("/v1/Digits", _SAMPLE, {"Content-Type": "image/png"}))

    assert response.status == 200
    assert response.json()["result"]["digit"] == 3


def test_body_over_the_limit_is_refused_before_it_is_read(server: ServerProcess) -> None:
    """Announce 1 GB, send 1 KB, and wait: the 413 must come without the rest.

    The rest never comes, and gunicorn's worker timeout (60 s) is far beyond the read's
    5 s: a 413 at all means it was answered at once, on the announced length alone.
    """
    head = (
        f"POST /v1/XXXModel HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {1024**3}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        started = time.monotonic()
        sock.sendall(head + b"{" + b" " * 1023)
        response = read_response(sock, started, timeout=5)

    body = assert_clean_error(response, {413})
    assert body["code"] == "payload_too_large"


def test_chunked_body_over_the_limit_is_413(server: ServerProcess) -> None:
    chunk = b"x" * 65536
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        started = time.monotonic()
        sock.sendall(b"POST /v1/XXXModel HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n")
        sock.sendall(b"Transfer-Encoding: chunked\r\n\r\n")
        try:
            for _ in range(LIMIT // len(chunk) + 4):
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        except (BrokenPipeError, ConnectionResetError):
            pass
        response = read_response(sock, started, timeout=10)

    assert assert_clean_error(response, {413})["code"] == "payload_too_large"


class _Slowloris(threading.Thread):
    """Holds a connection open by sending one header byte at a time, slowly."""

    def __init__(self, port: int, stop: threading.Event, body: bool) -> None:
        super().__init__(daemon=True)
        self.port, self.stop_event, self.body = port, stop, body

    def run(self) -> None:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=30) as sock:
                if self.body:  # complete headers, then a body that never finishes
                    sock.sendall(b"POST /v1/XXXModel HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n")
                    sock.sendall(b"Content-Length: 100000\r\n\r\n{")
                else:
                    sock.sendall(b"POST /v1/XXXModel HTTP/1.1\r\nHost: x\r\n")
                while not self.stop_event.wait(0.3):
                    sock.sendall(b" " if self.body else b"X")
        except OSError:
            pass


def test_a_handful_of_slowloris_clients_does_not_starve_gunicorn(server: ServerProcess) -> None:
    """Six slow clients (headers or body trickling in) hold six of 2 x 8 threads; the rest serve.

    gthread gives each connection a thread once its first bytes arrive, so a slow client
    holds one thread for as long as it trickles. With 2 workers x 8 threads, fewer than
    16 such clients cannot starve the server; on App Engine and Cloud Run, Google's front
    end buffers each request before it reaches gunicorn, so slow clients never get here.
    """
    stop = threading.Event()
    clients = [_Slowloris(server.port, stop, body=i % 2 == 0) for i in range(6)]
    for client in clients:
        client.start()
    time.sleep(1.0)  # every slow client now holds a thread
    try:
        # Each request must be served while the slow clients hold their threads: a starved
        # server would leave it waiting, and the client gives up (and fails) after 5 s.
        statuses = [
            requests.post(server.url + "/v1/XXXModel", json={"name": "Leo"}, timeout=5).status_code for _ in range(30)
        ]
    finally:
        stop.set()
    assert statuses == [200] * 30


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [(ALLOWED_ORIGIN, True), ("https://evil.example", False), ("null", False), ("https://shop.example.evil", False)],
)
def test_cors_from_a_disallowed_origin_gets_no_grant(server: ServerProcess, origin: str, allowed: bool) -> None:
    preflight = requests.options(
        server.url + "/v1/XXXModel",
        headers={"Origin": origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "x"},
        timeout=5,
    )
    actual = requests.post(server.url + "/v1/XXXModel", json={"name": "Leo"}, headers={"Origin": origin}, timeout=5)

    for response in (preflight, actual):
        assert response.status_code < 500
        assert (response.headers.get("Access-Control-Allow-Origin") == origin) is allowed
        assert "Access-Control-Allow-Credentials" not in response.headers


def test_the_server_is_still_healthy_after_all_that(server: ServerProcess) -> None:
    assert requests.get(server.url + "/readyz", timeout=5).status_code == 200
    assert requests.post(server.url + "/v1/XXXModel", json={"name": "Leo"}, timeout=5).json() == {
        "result": "Hello, Leo!"
    }
    assert "Traceback" not in server.log()
