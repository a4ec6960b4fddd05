"""The follower worker (serving/platform/gunicorn_followers.py) keeps gthread's behaviour at the edges.

Its request threads take readable connections from one epoll themselves; these run the
real gunicorn with gunicorn.conf.py and check what a client sees: connections take turns
on few threads, a silent connection costs no thread, pipelined requests, the keep-alive
timeout, the connection limit, and a graceful stop with a kept-alive connection.
"""

from __future__ import annotations

import http.client
import json
import signal
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import FIXTURE_HANDLERS
from tests.platform.test_e2e_shutdown import CRASH_SIGNS

pytestmark = pytest.mark.e2e

ONE_THREAD = {"HANDLERS_DIR": str(FIXTURE_HANDLERS / "workers"), "GUNICORN_WORKERS": "1", "GUNICORN_THREADS": "1"}


def _request(name: str, *, close: bool = False) -> bytes:
    body = json.dumps({"name": name}).encode()
    connection = b"Connection: close\r\n" if close else b""
    return (
        b"POST /v1/Process HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        + connection
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )


def _ask(connection: http.client.HTTPConnection) -> tuple[int, int]:
    connection.request("POST", "/v1/Process", body=b"{}", headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    return response.status, int(json.loads(response.read())["result"])


def _connect(url: str, timeout: float = 10.0) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=timeout)


def _read_until_closed(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_more_keep_alive_connections_than_threads_take_turns(start_gunicorn: Callable[..., Any]) -> None:
    """One thread, four kept-alive connections used in turn: none waits for another to close."""
    with start_gunicorn(ONE_THREAD) as server:
        host, port = server.url.removeprefix("http://").split(":")
        connections = [http.client.HTTPConnection(host, int(port), timeout=5) for _ in range(4)]
        try:
            answers = [_ask(connection) for _ in range(3) for connection in connections]
        finally:
            for connection in connections:
                connection.close()
        assert {status for status, _ in answers} == {200}
        assert len({pid for _, pid in answers}) == 1  # one worker served all twelve


def test_a_silent_connection_holds_no_thread(start_gunicorn: Callable[..., Any]) -> None:
    """Connections that send nothing wait in the kernel; the one thread answers a real request at once.

    gthread gave each new connection to a thread that waited up to 5 s for its first bytes.
    """
    with start_gunicorn(ONE_THREAD) as server:
        silent = [_connect(server.url) for _ in range(3)]
        try:
            time.sleep(0.2)
            started = time.monotonic()
            with _connect(server.url) as sock:
                sock.sendall(_request("now", close=True))
                answer = _read_until_closed(sock)
            assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
            assert time.monotonic() - started < 2.0
        finally:
            for sock in silent:
                sock.close()


def test_pipelined_requests_are_all_answered_in_order(start_gunicorn: Callable[..., Any]) -> None:
    """Three requests in one write: the bytes read ahead are served without waiting for more."""
    with start_gunicorn(ONE_THREAD) as server, _connect(server.url) as sock:
        sock.sendall(_request("a") + _request("b") + _request("c", close=True))
        answer = _read_until_closed(sock)
    assert answer.count(b"HTTP/1.1 200 OK\r\n") == 3, answer[:500]


def test_an_idle_connection_is_closed_after_the_keep_alive_time(start_gunicorn: Callable[..., Any]) -> None:
    with start_gunicorn(ONE_THREAD, "--keep-alive", "1") as server, _connect(server.url) as sock:
        sock.sendall(_request("once"))
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        assert sock.recv(65536) == b""  # the server closed it
        assert 0.5 < time.monotonic() - started < 4.0


def test_worker_connections_caps_the_open_connections(start_gunicorn: Callable[..., Any]) -> None:
    """At `worker_connections` open connections a worker stops accepting until one ends."""
    with start_gunicorn(ONE_THREAD, "--worker-connections", "2") as server:
        host, port = server.url.removeprefix("http://").split(":")
        held = [http.client.HTTPConnection(host, int(port), timeout=5) for _ in range(2)]
        for connection in held:
            assert _ask(connection)[0] == 200
        with _connect(server.url, timeout=1.0) as third:
            third.sendall(_request("third", close=True))
            with pytest.raises(TimeoutError):
                third.recv(65536)  # not accepted while two are open
            held[0].close()
            third.settimeout(5.0)
            assert _read_until_closed(third).startswith(b"HTTP/1.1 200")
        held[1].close()


def test_a_stop_answers_a_request_on_a_kept_alive_connection_then_closes_it(
    start_gunicorn: Callable[..., Any],
) -> None:
    """SIGTERM with a kept-alive connection open: a request sent in the linger is answered, `Connection: close`."""
    with start_gunicorn(ONE_THREAD) as server, _connect(server.url) as sock:
        sock.sendall(_request("before"))
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        sock.sendall(_request("during"))
        answer = _read_until_closed(sock)
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
        assert b"\r\nconnection: close\r\n" in answer.lower()
        assert server.process.wait(15) == 0
        assert not CRASH_SIGNS.search(server.log()), server.log()[-2000:]
