"""The Flask class the app is built on: Flask, less the per-request work this API never needs.

Both changes use what Flask documents for overriding, and a trivial model's request is
about 6 us cheaper for them (bench/wsgi_cost.py):

- `ensure_sync`: for every hook and view of every request (nine calls for
  `POST /v1/<Name>`), Flask asks `inspect.iscoroutinefunction` whether the function is a
  coroutine function, to run it through asgiref. The answer for a function never
  changes, so it is remembered, per function.
- Sessions: the API keeps no session (no cookies; callers present API keys), and no
  `SECRET_KEY` is ever set, so Flask's default opens a fresh `NullSession` for every
  request. `NoSessions` hands out one shared `NullSession` instead: empty, and refusing
  writes with Flask's own error, as each fresh one did.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask, Request, Response
from flask.sessions import NullSession, SessionInterface, SessionMixin

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


class ServingFlask(Flask):
    """Flask with `ensure_sync` remembered per function and `NoSessions`."""

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
