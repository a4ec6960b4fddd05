"""Per-client rate limits with Flask-Limiter: 429 JSON with `Retry-After` when exceeded.

`RATE_LIMITS` (e.g. `100/minute;10/second`, Flask-Limiter's syntax) applies to each
client across all protected routes together. A client is its API key when it presented a
valid one, else its IP address: `request.remote_addr`, which behind Google's front end is
the address the one trusted proxy hop reported (`PROXY_HOPS`, serving/platform/detect.py), never
a client-supplied `X-Forwarded-For` entry. Public routes (health, docs, static files) and
CORS preflights are not counted.

Counters live in memory by default, one set per gunicorn worker process (so with W
workers a client can get up to W times the limit from one instance); with
`RATE_LIMIT_STORAGE_URL=redis://...` (Memorystore on Google Cloud) they are shared by every
worker and instance. If Redis becomes unreachable, requests are still served, counted in
memory until it is back, and the outage is logged: rate limiting never takes the API down.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from flask import Response, request
from flask_limiter import Limiter

from serving.security import access

# Fail fast when Redis is unreachable: a request must not wait long for its counter.
_REDIS_OPTIONS: dict[str, str | int] = {"socket_connect_timeout": 1, "socket_timeout": 1}


def client_identity() -> str:
    """The bucket a request is counted in: its API key id, else its client address."""
    key_id = access.current_key_id()
    if key_id:
        return f"key:{key_id}"
    return f"ip:{request.remote_addr or 'unknown'}"


def create_limiter(*, limits: str, storage_url: str | None, key_prefix: str) -> Limiter | None:
    """A limiter counting each protected request per client; None when `limits` is ''.

    Its `init_app` registers Flask-Limiter's own hooks (the check before the view, its
    bookkeeping after): the request pipeline calls it at the rate limit's place.
    """
    if not limits:
        return None
    storage = storage_url or "memory://"
    limiter = Limiter(
        key_func=client_identity,
        application_limits=[limits],
        storage_uri=storage,
        storage_options=_REDIS_OPTIONS if storage.startswith(("redis", "rediss")) else {},
        strategy="sliding-window-counter",
        key_prefix=key_prefix,
        # Redis down: keep serving with per-process counters (logged), never a 500.
        in_memory_fallback_enabled=True,
        swallow_errors=True,
        headers_enabled=False,
    )
    # Public routes and preflights are never counted (nor refused).
    limiter.request_filter(access.is_public_request)
    return limiter


def retry_after(limiter: Limiter) -> Callable[[Response], Response]:
    """After-request step: a 429 says in `Retry-After` when the client's window resets."""

    def _retry_after(response: Response) -> Response:
        if response.status_code == 429:
            current = limiter.current_limit
            if current is not None and current.breached:
                # `reset_at` adds a second of rounding; the window's own reset time does not.
                seconds = max(1, math.ceil(current.window.reset_time - time.time()))
                response.headers["Retry-After"] = str(seconds)
        return response

    return _retry_after
