"""Who may call the API: optional API keys, checked on every route that is not public.

When keys are configured (`API_KEYS`, `API_KEYS_SECRET`), every route requires
`Authorization: Bearer <secret>` or `X-API-Key: <secret>` unless its view is marked
`@public` (health, readiness, warmup, the OpenAPI document, docs, the demo page and static
files) or the request is a CORS preflight (`OPTIONS`; browsers send no credentials on
those). Anything else gets a 401 JSON error with `WWW-Authenticate: Bearer`. Deny by
default: a route added later is protected unless it says otherwise.

For other modules:

- `current_key_id()` is the id of the key that authenticated this request (`str`), or
  `None` when keys are off or the route is public. Jobs record it as their owner and show
  a job only to the same key.
- `authorize_model(name)` raises `ModelForbidden` (403) when the request's key is scoped to
  other models; `may_use_model(name)` says whether it may.
- `@public` marks a view that never needs a key.

Two steps of the request pipeline (serving/http/pipeline.py) live here: `key_identifier()`
and `enforce_key()`, with the rate limit between them.

The secret itself is never stored on `g`, logged, or echoed; the logs carry `key_id`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from flask import Flask, current_app, g, request

from serving.config.api_keys import ApiKey, KeyRing
from serving.config.settings import Settings
from serving.errors import ModelForbidden, Unauthorized
from serving.security.secretmanager import access_secret

log = logging.getLogger("serving.security.access")

EXTENSION_KEY = "serving.security.access"
_PUBLIC_ATTR = "_serving_public"
# What this module keeps on `g` for the request: the key it presented (or None), and why
# it is refused when it has none. Other modules call `current_key()` / `current_key_id()`.
_KEY = "_access_key"
_PROBLEM = "_access_problem"

F = TypeVar("F", bound=Callable[..., object])


def public(view: F) -> F:
    """Mark a view function as open to everyone, even when API keys are required."""
    setattr(view, _PUBLIC_ATTR, True)
    return view


def load_key_ring(settings: Settings, fetch_secret: Callable[[str], str] = access_secret) -> KeyRing:
    """The keys from `API_KEYS` plus those in the `API_KEYS_SECRET` secret, if set.

    Raises `SettingsError` naming the variable when the secret cannot be read or parsed.
    """
    payload = fetch_secret(settings.api_keys_secret) if settings.api_keys_secret else None
    return settings.key_ring(payload)


def key_ring(app: Flask | None = None) -> KeyRing:
    """The app's `KeyRing` (empty when keys are off)."""
    ring: KeyRing = (app or current_app).extensions[EXTENSION_KEY]
    return ring


def _presented_secret() -> str | None:
    authorization = request.headers.get("Authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    api_key = request.headers.get("X-API-Key", "").strip()
    return api_key or None


def is_public_view(view: object) -> bool:
    """True when `view` was marked `@public`."""
    return bool(getattr(view, _PUBLIC_ATTR, False))


def is_public_request() -> bool:
    """True for requests that never need a key: preflights, public views, unmatched routes."""
    if request.method == "OPTIONS":
        return True
    endpoint = request.endpoint
    if endpoint is None:
        # No route matched: the 404 or 405 that follows reveals nothing a key protects.
        return True
    if endpoint == "static" or endpoint.endswith(".static"):
        return True
    return is_public_view(current_app.view_functions.get(endpoint))


def current_key() -> ApiKey | None:
    """The key that authenticated the current request, or None."""
    # `g` resolved once: `g.get` through the proxy costs several times as much, and every
    # model route asks (authorize_model), keys or not.
    key: ApiKey | None = g._get_current_object().get(_KEY)
    return key


def current_key_id() -> str | None:
    """The id of the key that authenticated the current request, or None.

    None as well when keys are off or the route is public. Jobs record it as their owner;
    the logs and the rate limiter use it to tell clients apart.
    """
    key: ApiKey | None = g._get_current_object().get(_KEY)
    return key.id if key is not None else None


def may_use_model(name: str) -> bool:
    """True unless the request's key is scoped to models other than `name`."""
    key = current_key()
    return key is None or key.may_use(name)


def authorize_model(name: str) -> None:
    """Raise `ModelForbidden` (403) when the request's key may not call model `name`."""
    if not may_use_model(name):
        raise ModelForbidden(f"This API key may not use model {name!r}")


def init_access_control(app: Flask, ring: KeyRing) -> None:
    """Keep `ring` as the app's keys (`key_ring()`), and say at start-up which are accepted."""
    app.extensions[EXTENSION_KEY] = ring
    if ring.enabled:
        log.info(
            "API keys required on model routes: %s",
            ", ".join(f"{key.id} (sha256 {key.fingerprint})" for key in ring.keys),
        )


def key_identifier(ring: KeyRing) -> Callable[[], None]:
    """Before-request step: find which of `ring`'s keys the request presented, if any.

    It only identifies; `enforce_key` refuses later, so that the rate limiter between
    the two counts rejected attempts per client address too (guessing keys costs the
    guesser their rate limit).
    """

    def _identify() -> None:
        context = g._get_current_object()
        setattr(context, _KEY, None)
        if not ring.enabled:
            return
        presented = _presented_secret()
        key = ring.authenticate(presented) if presented is not None else None
        setattr(context, _KEY, key)
        setattr(context, _PROBLEM, None if key is not None else ("missing" if presented is None else "invalid"))

    return _identify


def enforce_key() -> None:
    """Before-request step: 401 for a protected route without a valid key."""
    problem = g._get_current_object().get(_PROBLEM)
    if problem is None or is_public_request():
        return
    # Say which of the two it was, never anything about the secret that was sent.
    error = Unauthorized(
        "Missing API key: send Authorization: Bearer <key> or X-API-Key: <key>"
        if problem == "missing"
        else "Invalid API key"
    )
    error.headers["WWW-Authenticate"] = 'Bearer realm="model-serving"'
    raise error
