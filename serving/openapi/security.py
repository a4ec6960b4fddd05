"""What the OpenAPI document says about API keys, rate limits and time budgets.

`document_security()` runs after every route group has described its operations. It finds
each operation's view through the app's URL map, so it knows which are `@public`, and
adds to every protected one the key schemes and the answers that access control can
give: 401 (and 403 when some key is scoped to models) when keys are on, 429 with
`Retry-After` when rate limits are on, and to every operation that runs a model, 504 when
it overruns its time budget.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Flask
from werkzeug.exceptions import HTTPException
from werkzeug.routing import RequestRedirect

from serving.http.state import get_state
from serving.security.access import is_public_view, key_ring

SECURITY_SCHEMES = {
    "bearerAuth": {"type": "http", "scheme": "bearer", "description": "`Authorization: Bearer <API key>`."},
    "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "`X-API-Key: <API key>`."},
}
_ERROR_REF = {"$ref": "#/components/schemas/Error"}
_PARAMETER = re.compile(r"\{[^}/]+\}")
_METHODS = {"get", "post", "put", "patch", "delete"}


_REQUEST_ID = {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}}


def _error(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "description": description,
        "headers": {**_REQUEST_ID, **(headers or {})},
        "content": {"application/json": {"schema": _ERROR_REF}},
    }


def _is_public(app: Flask, path: str, method: str) -> bool:
    adapter = app.url_map.bind("localhost")
    try:
        endpoint, _ = adapter.match(_PARAMETER.sub("x", path), method=method.upper())
    except (HTTPException, RequestRedirect):
        return False
    return endpoint == "static" or endpoint.endswith(".static") or is_public_view(app.view_functions.get(endpoint))


def document_security(doc: dict[str, Any], app: Flask) -> None:
    """Add security schemes and the 401/403/429/504 answers to the operations of `doc`."""
    ring = key_ring(app)
    settings = get_state(app).settings
    if ring.enabled:
        doc.setdefault("components", {}).setdefault("securitySchemes", {}).update(SECURITY_SCHEMES)
    scoped = any(key.models is not None for key in ring.keys)
    for path, operations in doc.get("paths", {}).items():
        for method, operation in operations.items():
            if method not in _METHODS:
                continue
            responses = operation.setdefault("responses", {})
            if "500" in responses and method == "post":
                # It runs a model: the model's TIMEOUT_S (or PREDICT_TIMEOUT_S) applies.
                responses.setdefault("504", _error("The model did not answer within its time budget."))
            if _is_public(app, path, method):
                continue
            if ring.enabled:
                operation["security"] = [{"bearerAuth": []}, {"apiKeyHeader": []}]
                responses.setdefault("401", _error("No API key, or not a valid one."))
                if scoped:
                    responses.setdefault("403", _error("This API key may not use this model."))
            if settings.rate_limits:
                responses.setdefault(
                    "429",
                    _error(
                        f"Over this client's rate limit ({settings.rate_limits}).",
                        headers={"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}},
                    ),
                )
