"""The tutorial's request validation, shared by the baseline apps."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import request
from jsonschema import ValidationError, validate


def validate_json(schema: dict[str, Any]) -> Callable[[Callable[[], Any]], Callable[[], Any]]:
    """The tutorial's decorator: 400 without a JSON body or when it breaks `schema`."""

    def decorator(f: Callable[[], Any]) -> Callable[[], Any]:
        @wraps(f)
        def wrapper() -> Any:
            json_body = request.get_json(silent=True)
            if json_body is None:
                return {"message": "No JSON object"}, 400
            try:
                validate(json_body, schema)
            except ValidationError as e:
                return {"message": e.message}, 400
            return f()

        return wrapper

    return decorator
