"""Answer now or schedule a job: how `POST /v1/<Name>` decides.

A request becomes a job when the client asks (`Prefer: respond-async`, RFC 7240, or
`?async=true`) or the handler declares `ASYNC = "always"`; a handler's `ASYNC = "never"`
refuses `?async=true`. `Prefer` is only a preference: a server without a job store, or a
model that never runs asynchronously, answers it synchronously, as RFC 7240 asks.
The jobs package (serving/jobs/routes.py) is handed the job's options, stores the job
and answers 202.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flask import request

from serving.errors import BadRequest
from serving.runtime.registry import ModelRuntime

IDEMPOTENCY_HEADER = "Idempotency-Key"
_IDEMPOTENCY_ENVIRON = "HTTP_IDEMPOTENCY_KEY"
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


@dataclass(frozen=True)
class JobRequest:
    """The current request is to be scheduled as a job, with these options."""

    idempotency_key: str | None
    # The client sent `Prefer: respond-async`: the 202 says `Preference-Applied`.
    preferred: bool


def job_request(runtime: ModelRuntime, *, jobs_enabled: bool) -> JobRequest | None:
    """None to answer the current request for `runtime` now; a `JobRequest` to schedule it.

    Raises `BadRequest` (400) when the request asks what the model forbids, or when a
    model that may run asynchronously gets a malformed `Idempotency-Key` (whether or not
    this request runs as a job, as documented).
    """
    # Read from the environ, where `request.headers` reads them too: its `get`, and that of
    # `request.args`, raise and catch a KeyError inside Werkzeug for each one absent, and
    # nearly every request sends none of them.
    environ = request.environ
    mode = runtime.spec.async_mode
    key = idempotency_key(environ) if mode != "never" else None
    explicit = _async_query(environ)
    if mode == "always":
        if explicit is False:
            raise BadRequest(f"Model {runtime.spec.name} runs only asynchronously; drop async=false")
        return JobRequest(key, prefers_async(environ))
    if mode == "never":
        if explicit is True:
            raise BadRequest(f"Model {runtime.spec.name} does not run asynchronously; drop async=true")
        # A Prefer header is only a preference (RFC 7240): answered synchronously.
        return None
    preferred = prefers_async(environ)
    if explicit is True or (explicit is None and preferred and jobs_enabled):
        # Only a preference: without a job store the request is answered synchronously,
        # as RFC 7240 asks of a server that cannot honour it.
        return JobRequest(key, preferred)
    return None


def prefers_async(environ: Mapping[str, Any]) -> bool:
    """True when the request's `Prefer` header holds `respond-async`."""
    # The server has joined repeated headers into one, with commas. RFC 7240: a
    # comma-separated list of preferences, each `token[=value] *(; param)`.
    for preference in environ.get("HTTP_PREFER", "").split(","):
        name = preference.split(";", 1)[0].split("=", 1)[0].strip().lower()
        if name == "respond-async":
            return True
    return False


def idempotency_key(environ: Mapping[str, Any]) -> str | None:
    """The request's Idempotency-Key; 400 when it is malformed."""
    key: str | None = environ.get(_IDEMPOTENCY_ENVIRON)
    if key is not None and not _IDEMPOTENCY_KEY.match(key):
        raise BadRequest("Idempotency-Key must be 1 to 255 visible ASCII characters", path=IDEMPOTENCY_HEADER)
    return key


def _async_query(environ: Mapping[str, Any]) -> bool | None:
    # Without a query string (nearly every request) there is nothing to parse.
    raw = request.args.get("async") if environ.get("QUERY_STRING") else None
    if raw is None:
        return None
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise BadRequest("Query parameter async must be true or false", path="async")
