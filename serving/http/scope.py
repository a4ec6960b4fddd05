"""The pipeline step that opens each request's `RequestScope` (serving/runtime/request_scope.py).

The scope carries the request's time budget (its model's, when the URL names one), its
allowance of decoded pixels (`MAX_PIXELS_PER_REQUEST`) and a probe telling whether the
client has closed its connection, so that work done for the request (queued batches,
chunk loops, a model's own loops) stops once nobody waits for it.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable

from flask import g, request

from serving.http.state import get_state
from serving.runtime.request_scope import RequestScope, enter_scope, exit_scope

_TOKEN = "serving_request_scope_token"  # noqa: S105 - a name in `g`, not a secret


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


def open_request_scope() -> None:
    """Before-request step: the request's scope becomes current until `close_request_scope`."""
    state = get_state()
    sock = request.environ.get("gunicorn.socket")
    probe = client_gone_probe(sock) if isinstance(sock, socket.socket) and not isinstance(sock, ssl.SSLSocket) else None
    name = (request.view_args or {}).get("name")
    runtime = state.registry.get(name) if isinstance(name, str) else None
    budget = state.inference.budget.timeout_for(runtime.spec.timeout_s) if runtime is not None else 0.0
    scope = RequestScope(budget_s=budget, max_pixels=state.settings.max_pixels_per_request, client_gone=probe)
    setattr(g, _TOKEN, enter_scope(scope))


def close_request_scope(_exc: BaseException | None) -> None:
    """Teardown step: the scope is closed (a before-request refusal may have skipped opening it)."""
    token = g.pop(_TOKEN, None)
    if token is not None:
        try:
            exit_scope(token)
        except ValueError:  # torn down in another context than the one it was opened in
            enter_scope(None)
