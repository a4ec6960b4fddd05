"""Each request's `RequestScope` (serving/runtime/request_scope.py), opened around the app.

The scope carries the request's time budget (set by its first model call, counted from
when its body arrived), its allowance of decoded pixels (`MAX_PIXELS_PER_REQUEST`) and a
probe telling whether the client has closed its connection, so that work done for the
request (queued batches, chunk loops, a model's own loops) stops once nobody waits.

`RequestScopes` is WSGI middleware rather than a pipeline step: a scope is a context
variable set for the whole call of the app and reset after it, so it needs no request
hook, no slot in `flask.g` and no look at the endpoint: every request has one, and the
code that works for a model reads what it needs from it.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable, Iterable
from typing import Any

from serving.runtime.request_scope import RequestScope, opened_scope

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def client_gone_probe(sock: socket.socket) -> Callable[[], bool]:
    """A function telling whether the peer of `sock` has closed it, without reading from it.

    Peeks one byte without waiting: end of stream (or a reset) means the client has gone;
    no data yet, or data (a pipelined request, an unread body), means it may still wait.
    A client that half-closes its side after sending the request (rare in HTTP/1.1)
    looks gone: its work stops, as for a client that left.
    """

    def _gone() -> bool:
        try:
            return not sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return False
        except ValueError:  # a closed socket object
            return True
        except OSError:  # reset, or not connected any more
            return True

    return _gone


class RequestScopes:
    """WSGI middleware: the app runs each request inside a fresh `RequestScope`.

    `max_pixels` is `MAX_PIXELS_PER_REQUEST`. Under gunicorn the connection's socket
    (`gunicorn.socket`) gives the client-gone probe; without one (Flask's test client)
    the client is never taken for gone. A TLS socket is not peeked (its bytes are records).
    """

    def __init__(self, app: WsgiApp, max_pixels: int) -> None:
        self.app = app
        self.max_pixels = max_pixels

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        sock = environ.get("gunicorn.socket")
        plain = isinstance(sock, socket.socket) and not isinstance(sock, ssl.SSLSocket)
        probe = client_gone_probe(sock) if isinstance(sock, socket.socket) and plain else None
        with opened_scope(RequestScope(max_pixels=self.max_pixels, client_gone=probe)):
            return self.app(environ, start_response)
