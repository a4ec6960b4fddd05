"""Raw HTTP/1.1 over a socket, for requests no well-behaved client library will send."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RawResponse:
    """A parsed response: status, lower-cased headers, body bytes, seconds until the head."""

    status: int
    headers: dict[str, str]
    body: bytes
    elapsed: float = 0.0
    raw_head: bytes = field(default=b"", repr=False)

    def json(self) -> Any:
        return json.loads(self.body)


def read_response(sock: socket.socket, started: float, timeout: float) -> RawResponse:
    """Read one response from `sock` (by Content-Length, or until the peer closes)."""
    sock.settimeout(timeout)
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"connection closed before a full response head: {buffer[:200]!r}")
        buffer += chunk
    elapsed = time.monotonic() - started
    head, _, body = buffer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        length = int(headers["content-length"])
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
        body = body[:length]
    return RawResponse(status, headers, body, elapsed, head)


def exchange(port: int, data: bytes, *, timeout: float = 10.0, half_close: bool = False) -> RawResponse:
    """Send `data` as-is to 127.0.0.1:`port` and read the response.

    `half_close` shuts the sending side after `data`, as a client that died mid-body
    would: a body shorter than its Content-Length then ends instead of hanging.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        started = time.monotonic()
        # The server may answer and close before reading everything we send.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        return read_response(sock, started, timeout)


def request_bytes(
    method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None, *, content_length: bool = True
) -> bytes:
    """A complete HTTP/1.1 request with `Connection: close`."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if content_length and (body or method in ("POST", "PUT")):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
