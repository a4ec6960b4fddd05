"""Encoding JSON responses with orjson, with Flask's encoder as the fallback.

Every response body (results, model listings, errors) is JSON, so encoding is on every
request's path: orjson does it in about a third of the time of the standard library
(measured in bench/RESULTS.md), and also encodes NumPy arrays and scalars that handlers
return. For what orjson refuses (integers beyond 64 bits, non-string keys, types only
Flask knows), the standard encoder with Flask's conversions answers instead, so no
result that Flask could encode fails here.

Bodies are compact and keep the order of keys. Request bodies are not parsed here: see
`serving.http.body`, whose strict checks orjson cannot make.
"""

from __future__ import annotations

from typing import Any, cast

import orjson
from flask import Response
from flask.json.provider import DefaultJSONProvider

# Dates go through Flask's `default` (HTTP dates), as they would with Flask's encoder.
_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_PASSTHROUGH_DATETIME


class FastJSONProvider(DefaultJSONProvider):
    """Flask's JSON provider with orjson for `jsonify()` and `dumps()`."""

    sort_keys = False
    compact = True

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        """`obj` as JSON text (keyword arguments force the standard encoder)."""
        if not kwargs:
            try:
                return orjson.dumps(obj, default=self.default, option=_OPTIONS).decode()
            except TypeError:  # orjson.JSONEncodeError is a TypeError
                pass
        return super().dumps(obj, **kwargs)

    def response(self, *args: Any, **kwargs: Any) -> Response:
        """A `Response` holding the JSON of `args` or `kwargs` (as `jsonify()` takes them)."""
        obj = self._prepare_response_obj(args, kwargs)
        try:
            body = orjson.dumps(obj, default=self.default, option=_OPTIONS | orjson.OPT_APPEND_NEWLINE)
        except TypeError:
            body = (super().dumps(obj, separators=(",", ":")) + "\n").encode()
        response_class = cast("type[Response]", self._app.response_class)
        return response_class(body, mimetype=self.mimetype)
