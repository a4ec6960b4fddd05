"""gunicorn's HTTP/1 response, with the headers and a small body leaving in one send.

gunicorn's `Response.write` sends the headers (`send_headers`) and then each body chunk,
each with its own `sendall`: for a JSON answer of a few hundred bytes that is two system
calls, two releases and re-takes of the GIL, and two TCP segments where one would do. A
py-spy profile of a worker under load (bench/NOTES.md, issue 24) put 22% of a worker's
busy time in `send_headers` alone.

`SingleSendResponse` holds the encoded headers back when the response declares a
`Content-Length` of at most `MAX_COALESCED_BODY` bytes and is not chunked, and puts them
on the wire together with the first body bytes, through `_emit_body`, the method gunicorn
provides for subclasses to frame the body their own way. Every other response (streamed,
chunked, large, sendfile, no body at all) goes out as gunicorn sends it; a response that
ends without writing a body flushes the held headers in `close`.

`use_single_send()` makes it the class `gunicorn.http.wsgi.create` builds by default, in
the worker process that calls it (serving/platform/gunicorn_worker.py does, after the
fork). gunicorn has no setting for the response class of HTTP/1 (HTTP/2 passes its own,
which this leaves alone), so this swaps the module attribute `create` reads; a test over
real HTTP fails if a release renames it.
"""

from __future__ import annotations

import importlib
import time
from email.utils import formatdate
from typing import Any

from gunicorn.http.wsgi import Response  # type: ignore[import-untyped]  # gunicorn is untyped

# Bodies up to this size share the headers' send. Larger ones gain nothing from it (their
# own send dominates) and would copy the body once more to join the headers.
MAX_COALESCED_BODY = 64 * 1024


class _DateHeader:
    """The `Date` header's value, formatted once a second instead of once a response.

    gunicorn formats it for every response with `email.utils.formatdate`: 1.9 us, 2.5% of
    the Python time of a small request in a py-spy profile (bench/NOTES.md), for a value
    that changes once a second. Read from here: 0.1 us.
    """

    __slots__ = ("_cached",)

    def __init__(self) -> None:
        self._cached: tuple[int, str] = (-1, "")

    def now(self) -> str:
        """The current time as an HTTP date (`Sat, 05 Dec 2026 14:30:00 GMT`)."""
        second = int(time.time())
        cached = self._cached  # one tuple: a thread never sees one second with another's text
        if cached[0] != second:
            cached = (second, formatdate(second, usegmt=True))
            self._cached = cached
        return cached[1]


class SingleSendResponse(Response):  # type: ignore[misc]
    """gunicorn's `Response`, sending headers with a small declared-length body in one `sendall`."""

    # gunicorn's own attributes this class reads (gunicorn is untyped).
    headers_sent: bool
    chunked: bool
    response_length: int | None
    headers: list[tuple[str, str]]
    sock: Any
    upgrade: bool
    req: Any
    status: str
    version: str

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._held_headers: bytes | None = None
        self._sending_file = False

    def _coalesces(self) -> bool:
        length = self.response_length
        return not self._sending_file and not self.chunked and length is not None and 0 < length <= MAX_COALESCED_BODY

    def sendfile(self, respiter: Any) -> bool:
        """gunicorn's: a file's bytes go straight to the socket (os.sendfile), so its headers go first."""
        # Not through `_emit_body`: headers held back here would follow the file's bytes.
        self._sending_file = True
        try:
            return bool(super().sendfile(respiter))
        finally:
            self._sending_file = False

    _date = _DateHeader()

    def default_headers(self) -> list[str]:
        """gunicorn's status line and `Server`, `Date`, `Connection` headers, the date from `_DateHeader`."""
        if self.upgrade:
            connection = "upgrade"
        elif self.should_close():
            connection = "close"
        else:
            connection = "keep-alive"
        version = self.req.version
        headers = [
            f"HTTP/{version[0]}.{version[1]} {self.status}\r\n",
            f"Server: {self.version}\r\n",
            f"Date: {self._date.now()}\r\n",
            f"Connection: {connection}\r\n",
        ]
        if self.chunked:
            headers.append("Transfer-Encoding: chunked\r\n")
        return headers

    def send_headers(self) -> None:
        """gunicorn's, except that the bytes of a coalescing response wait for its body."""
        if self.headers_sent or not self._coalesces():
            super().send_headers()
            return
        # gunicorn's `send_headers`, with the bytes kept instead of written.
        lines = self.default_headers()
        lines.extend(f"{name}: {value}\r\n" for name, value in self.headers)
        self._held_headers = ("".join(lines) + "\r\n").encode("latin-1")
        self.headers_sent = True

    def _emit_body(self, data: bytes) -> None:
        held = self._held_headers
        if held is not None:
            self._held_headers = None
            self.sock.sendall(held + data)
            return
        super()._emit_body(data)

    def close(self) -> None:
        """gunicorn's close, then the headers still held (a response that declared a body but wrote none)."""
        super().close()  # sends the headers if nothing did: into `_held_headers` when they coalesce
        held = self._held_headers
        if held is not None:
            self._held_headers = None
            self.sock.sendall(held)


def use_single_send() -> None:
    """Make `SingleSendResponse` the response gunicorn's `wsgi.create` builds, in this process."""
    wsgi: Any = importlib.import_module("gunicorn.http.wsgi")
    if not isinstance(getattr(wsgi, "Response", None), type) or not callable(getattr(wsgi, "create", None)):
        raise RuntimeError("gunicorn changed http.wsgi.Response or create: see gunicorn_response.py")
    wsgi.Response = SingleSendResponse
