"""The Flask class the app is built on: Flask, less the per-request work this API never needs.

Each change uses what Flask or Werkzeug documents for overriding, and a trivial model's
request is about 6 us cheaper for the first two (bench/wsgi_cost.py):

- `ensure_sync`: for every hook and view of every request (nine calls for
  `POST /v1/<Name>`), Flask asks `inspect.iscoroutinefunction` whether the function is a
  coroutine function, to run it through asgiref. The answer for a function never
  changes, so it is remembered, per function.
- Sessions: the API keeps no session (no cookies; callers present API keys), and no
  `SECRET_KEY` is ever set, so Flask's default opens a fresh `NullSession` for every
  request. `NoSessions` hands out one shared `NullSession` instead: empty, and refusing
  writes with Flask's own error, as each fresh one did.
- `ServingResponse.get_wsgi_headers`: Werkzeug copies a response's headers for every
  response (validating each name and value again, 3.3 us for an answer's nine) to adjust
  the copy: `Location` made absolute, `Content-Length` added or removed for some
  statuses. An answer that needs none of that (a length set, no location, a status that
  carries a body) is sent with its own headers, which `start_response` gets as a list.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask, Request, Response
from flask.sessions import NullSession, SessionInterface, SessionMixin
from werkzeug.datastructures import Headers

# What Werkzeug rewrites in a response's headers before sending them (a relative URL made absolute).
_ADJUSTED_HEADERS = frozenset(("location", "content-location"))
# Hooks and views are a fixed few; this only bounds what a function made per request
# (e.g. by `after_this_request`) could hold on to.
_MAX_REMEMBERED = 1024


class NoSessions(SessionInterface):
    """Every request gets the same empty `NullSession`, and nothing is ever saved."""

    def __init__(self) -> None:
        self._session = NullSession()

    def open_session(self, app: Flask, request: Request) -> SessionMixin:
        return self._session

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        """Never called: Flask saves no null session."""


class ServingResponse(Response):
    """Flask's response, whose headers are sent as they are when Werkzeug would change nothing in them."""

    def get_wsgi_headers(self, environ: dict[str, Any]) -> Headers:
        """Werkzeug's `get_wsgi_headers`, without its copy for a response it would leave as it is."""
        status = self.status_code
        if status < 200 or status in (204, 304):
            return super().get_wsgi_headers(environ)
        has_length = False
        for name, _ in self.headers:
            lowered = name.lower()
            if lowered == "content-length":
                has_length = True
            elif lowered in _ADJUSTED_HEADERS:
                return super().get_wsgi_headers(environ)
        return self.headers if has_length else super().get_wsgi_headers(environ)


class ServingFlask(Flask):
    """Flask with `ensure_sync` remembered per function, `NoSessions` and `ServingResponse`."""

    response_class = ServingResponse

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.session_interface = NoSessions()
        self._sync_functions: dict[Callable[..., Any], Callable[..., Any]] = {}

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """Flask's `ensure_sync(func)`, worked out once per function."""
        try:
            return self._sync_functions[func]
        except KeyError:
            sync = super().ensure_sync(func)
            if len(self._sync_functions) < _MAX_REMEMBERED:
                self._sync_functions[func] = sync
            return sync
        except TypeError:  # an unhashable callable
            return super().ensure_sync(func)
