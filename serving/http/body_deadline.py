"""A deadline for each request's body (BODY_READ_TIMEOUT_S): 408, and the thread is free again.

Without it a client that sends headers and part of a body, then nothing, holds a gunicorn
thread for as long as its connection stays open: gthread reads bodies from a blocking
socket, and gunicorn's `timeout` only watches the worker's heartbeat, which the main
loop keeps beating while a request thread waits.

The deadline is for the whole body, counted from when the app is called (the headers
have arrived). A socket timeout cannot express that: it bounds each `recv`, and
gunicorn's body reader makes as many as it needs inside one `read()`, so a client sending
a byte a second would never trip it. Instead `BodyReadDeadline` hands the connection's
socket (`gunicorn.socket` in the WSGI environment) to one watchdog thread when the app
starts reading the body; if the body is not all there by the deadline, the watchdog
shuts the socket's read side, which wakes the blocked `recv` with end-of-stream. The
read then raises `RequestTimeout` (408, rendered as JSON like every error), the response
still goes out (only reading was shut), and gunicorn closes the connection after it.
A body read to its end, and the request's end, take the socket off the watch.

Under a server that gives no socket (Flask's test client, `python main.py`), requests
pass unchanged. `BODY_READ_TIMEOUT_S=0` turns it off.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from serving.errors import RequestTimeout
from serving.kit.forking import reset_in_forked_child

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

# How long the watchdog sleeps with nothing to watch before it looks again.
_IDLE_S = 1.0


class _Watch:
    """One socket under watch until `deadline` (a `time.monotonic()` value)."""

    __slots__ = ("active", "deadline", "fired", "sock")

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.deadline = deadline
        self.active = True
        self.fired = False


class _Watchdog:
    """One daemon thread that shuts the read side of sockets whose body deadline passes.

    A heap ordered by deadline; cancelled watches are skipped when they come up, so
    watching and cancelling cost a lock and a heap push, not a thread per request.

    Nor a wake-up per request: the thread sleeps until the earliest deadline, or, with
    nothing to watch, for `_IDLE_S`, and a new watch wakes it only when its deadline
    comes before that. Every request's deadline is later than those before it (one
    `BODY_READ_TIMEOUT_S`), so that is nearly never; waking it for each one cost about
    30 us of CPU per request in the two threads' hand-offs (bench/wsgi_cost.py).
    """

    def __init__(self) -> None:
        self._forget()
        reset_in_forked_child(self._forget)

    def _forget(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, _Watch]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None
        # When the thread looks at the heap next (`time.monotonic()`); 0: it is looking now.
        self._wake_at = 0.0

    def watch(self, sock: socket.socket, deadline: float) -> _Watch:
        entry = _Watch(sock, deadline)
        with self._cond:
            heap = self._heap
            while heap and not heap[0][2].active:  # cancelled ones: dropped as they come up
                heapq.heappop(heap)
            heapq.heappush(heap, (deadline, next(self._order), entry))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="body-deadline", daemon=True)
                self._thread.start()
            elif deadline < self._wake_at:
                self._cond.notify()
        return entry

    def _run(self) -> None:
        while True:
            with self._cond:
                entry = self._next_due()
            with contextlib.suppress(OSError):  # closed meanwhile: nothing to wake
                entry.sock.shutdown(socket.SHUT_RD)  # the blocked recv returns end-of-stream

    def _next_due(self) -> _Watch:
        """Wait (the condition held) for a watch whose deadline passes; it is marked fired."""
        heap = self._heap
        while True:
            while heap and not heap[0][2].active:
                heapq.heappop(heap)
            now = time.monotonic()
            if heap and heap[0][0] <= now:
                entry = heapq.heappop(heap)[2]
                entry.fired = True
                self._wake_at = 0.0
                return entry
            self._wake_at = heap[0][0] if heap else now + _IDLE_S
            self._cond.wait(self._wake_at - now)


_WATCHDOG = _Watchdog()


class _DeadlineInput:
    """`wsgi.input` whose reads end at the body's deadline with `RequestTimeout` (408)."""

    def __init__(self, stream: Any, sock: socket.socket, deadline: float, length: int | None) -> None:
        self._stream = stream
        self._sock = sock
        self._deadline = deadline
        self._left = length  # bytes of a Content-Length body not read yet
        self._watch: _Watch | None = None

    def _guarded(self, read: Callable[..., Any], *args: Any) -> Any:
        if self._left == 0:
            return read(*args)
        if self._watch is None:
            if time.monotonic() >= self._deadline:
                raise self._timeout()
            self._watch = _WATCHDOG.watch(self._sock, self._deadline)
        elif self._watch.fired:
            raise self._timeout()
        try:
            data = read(*args)
        except Exception:
            if self._watch.fired:  # gunicorn's reader saw the end of stream mid-chunk
                raise self._timeout() from None
            raise
        if self._watch.fired:
            raise self._timeout()
        size = len(data) if isinstance(data, bytes) else sum(len(line) for line in data)
        if self._left is not None:
            self._left = max(self._left - size, 0)
        if size == 0 or self._left == 0:
            self.done()  # the whole body is here
        return data

    def _timeout(self) -> RequestTimeout:
        return RequestTimeout("The request body did not arrive within BODY_READ_TIMEOUT_S; the connection is closed")

    def done(self) -> None:
        """Take the socket off the watch (idempotent)."""
        if self._watch is not None and not self._watch.fired:
            self._watch.active = False
        self._left = 0

    def read(self, *args: Any) -> bytes:
        data: bytes = self._guarded(self._stream.read, *args)
        return data

    def readline(self, *args: Any) -> bytes:
        line: bytes = self._guarded(self._stream.readline, *args)
        return line

    def readlines(self, *args: Any) -> list[bytes]:
        lines: list[bytes] = self._guarded(self._stream.readlines, *args)
        return lines

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line


class BodyReadDeadline:
    """WSGI middleware: each request's body must arrive within `timeout_s` of its headers."""

    def __init__(self, app: WsgiApp, timeout_s: float) -> None:
        self.app = app
        self.timeout_s = timeout_s

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        sock = environ.get("gunicorn.socket")
        if self.timeout_s <= 0 or not isinstance(sock, socket.socket):
            return self.app(environ, start_response)
        length = environ.get("CONTENT_LENGTH")
        stream = _DeadlineInput(
            environ["wsgi.input"],
            sock,
            time.monotonic() + self.timeout_s,
            int(length) if isinstance(length, str) and length.isdigit() else None,
        )
        environ["wsgi.input"] = stream
        try:
            return self.app(environ, start_response)
        finally:
            stream.done()
