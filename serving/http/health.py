"""Liveness, readiness and App Engine's warmup request.

- `GET /healthz`: 200 while the process serves requests (Cloud Run's liveness probe).
- `GET /readyz`: 200 only when every model whose packages are installed has loaded; 503
  with each model's state otherwise (Cloud Run's startup probe, load balancers).
- `GET /_ah/warmup`: App Engine sends it before routing traffic to a new instance; it
  loads every model and answers 200 when they all loaded.

The three need no key (the platform's probes send none). With `API_KEYS` on, readiness
tells a caller without a valid key which models are not ready but not why: a reason may
name a bucket, a path or a library (the log has it). A valid key sees the reasons of the
models it may call.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify

from serving.http.state import get_state
from serving.security.access import current_key, key_ring, public

blueprint = Blueprint("health", __name__)


def _readiness() -> tuple[dict[str, Any], int]:
    registry = get_state().registry
    keys_on, key = key_ring().enabled, current_key()
    models = {}
    for runtime in registry:
        entry: dict[str, Any] = {"status": runtime.status.value}
        may_see_why = not keys_on or (key is not None and key.may_use(runtime.spec.name))
        if runtime.reason is not None and may_see_why:
            entry["reason"] = runtime.reason
        models[runtime.spec.name] = entry
    ready = registry.ready()
    return {"status": "ready" if ready else "not_ready", "models": models}, 200 if ready else 503


@blueprint.get("/healthz")
@public
def healthz() -> Response:
    return jsonify(status="ok")


@blueprint.get("/readyz")
@public
def readyz() -> tuple[Response, int]:
    body, status = _readiness()
    if status != 200:
        body["message"] = "Not ready: some models have not loaded"
    return jsonify(body), status


@blueprint.get("/_ah/warmup")
@public
def warmup() -> tuple[Response, int]:
    get_state().registry.load_all()
    body, status = _readiness()
    if status != 200:
        body["message"] = "Warmup incomplete: some models failed to load"
    return jsonify(body), status
