"""JSON Schema validation of model inputs and outputs, compiled once per schema.

A `SchemaValidator` is built when the registry loads a handler, so a request pays only
for `iter_errors`. The error it raises carries the tutorial's message (jsonschema's
best-matching error, e.g. `'name' is a required property`) plus the failing JSON path.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import SchemaError, best_match

from serving.errors import ValidationFailed

_FORMATS = FormatChecker()


class SchemaValidator:
    """Validates documents against one JSON Schema (draft 2020-12)."""

    def __init__(self, schema: Mapping[str, Any]) -> None:
        Draft202012Validator.check_schema(schema)
        self.schema = schema
        self._validator = Draft202012Validator(schema, format_checker=_FORMATS)

    def first_error(self, document: Any) -> tuple[str, str] | None:
        """`(message, json_path)` of the most relevant violation, or None when valid."""
        error = best_match(self._validator.iter_errors(document))
        if error is None:
            return None
        return _short(error.message), error.json_path

    def validate(self, document: Any, *, where: str = "$") -> None:
        """Raise `ValidationFailed` (400) when `document` does not match the schema.

        `where` prefixes the reported path, e.g. `$.instances[3]` for a batch item.
        """
        found = self.first_error(document)
        if found is not None:
            message, path = found
            full_path = where + path[1:]
            raise ValidationFailed(message, path=full_path)


def schema_problem(schema: object) -> str | None:
    """What is wrong with `schema` as a draft 2020-12 JSON Schema, or None when usable."""
    if not isinstance(schema, Mapping):
        return f"a {type(schema).__name__}, not a dict"
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        return f"an error at {exc.json_path}: {_short(exc.message)}"
    return None


def _short(message: str, limit: int = 300) -> str:
    # jsonschema repeats the offending value in its message; a 2 MB string would come
    # straight back to the client and into the logs.
    return message if len(message) <= limit else message[: limit - 3] + "..."
