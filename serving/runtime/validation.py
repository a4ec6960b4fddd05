"""JSON Schema validation of model inputs and outputs, compiled once per schema.

A `SchemaValidator` is built when the registry loads a handler, so a request pays only
for `iter_errors`. The error it raises carries the tutorial's message (jsonschema's
best-matching error, e.g. `'name' is a required property`) plus the failing JSON path.

jsonschema (pure Python) is the reference. It costs about 70 us to check one Digits
result (ten probabilities), a seventh of the whole request; jsonschema-rs (compiled)
answers "valid?" in under 1 us. So a schema made only of keywords on which the two are
known to agree (`_AGREED_KEYWORDS`: types, properties, sizes and bounds; not `pattern`,
whose regex dialects differ, nor `format`, `uniqueItems`, `multipleOf` or `$ref`; `enum`
and `const` only when their values are strings) is checked by jsonschema-rs first: a
document it accepts is valid, and anything else goes to jsonschema, whose verdict and
message are final. Other schemas use jsonschema alone. tests/runtime/test_validation.py checks the
two agree on every handler schema.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import jsonschema_rs
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import SchemaError, best_match

from serving.errors import ValidationFailed

_FORMATS = FormatChecker()

# Keywords whose meaning jsonschema-rs and jsonschema implement alike (see above), and
# where their values hold subschemas.
_ANNOTATIONS = frozenset(
    {"$schema", "$comment", "title", "description", "examples", "default", "deprecated", "readOnly", "writeOnly"}
)
_ONE_SUBSCHEMA = frozenset({"items", "additionalProperties", "not"})
_SUBSCHEMA_LISTS = frozenset({"prefixItems", "allOf", "anyOf", "oneOf"})
_SUBSCHEMA_MAPS = frozenset({"properties"})
_AGREED_KEYWORDS = (
    _ANNOTATIONS
    | _ONE_SUBSCHEMA
    | _SUBSCHEMA_LISTS
    | _SUBSCHEMA_MAPS
    | {
        "type",
        "required",
        "minItems",
        "maxItems",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "minLength",
        "maxLength",
        "minProperties",
        "maxProperties",
        "contentEncoding",
        "contentMediaType",
    }
)


# Keywords on which they agree when every value they list is a string (Iris' `label`).
_STRING_VALUE_KEYWORDS = frozenset({"enum", "const"})


class SchemaValidator:
    """Validates documents against one JSON Schema (draft 2020-12)."""

    def __init__(self, schema: Mapping[str, Any]) -> None:
        Draft202012Validator.check_schema(schema)
        self.schema = schema
        self._validator = Draft202012Validator(schema, format_checker=_FORMATS)
        self.fast: Any = None
        if uses_agreed_keywords_only(schema):
            try:
                self.fast = jsonschema_rs.validator_for(dict(schema))
            except Exception:  # noqa: BLE001 - a schema it cannot compile is checked by jsonschema alone
                self.fast = None

    def first_error(self, document: Any) -> tuple[str, str] | None:
        """`(message, json_path)` of the most relevant violation, or None when valid."""
        if self.fast is not None:
            try:
                if self.fast.is_valid(document):
                    return None
            except Exception:  # noqa: BLE001, S110 - e.g. an integer beyond 64 bits: ask jsonschema
                pass
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


def uses_agreed_keywords_only(schema: object) -> bool:
    """True when every keyword in `schema` (and its subschemas) is in `_AGREED_KEYWORDS`."""
    if isinstance(schema, bool):
        return True
    if not isinstance(schema, Mapping):
        return False
    for keyword, value in schema.items():
        if keyword in _STRING_VALUE_KEYWORDS:
            # Only strings: an enum of numbers raises 1 == 1.0 == True questions, where
            # the two libraries may differ; strings equal only equal strings in both.
            values = value if keyword == "enum" else [value]
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                return False
            continue
        if keyword not in _AGREED_KEYWORDS:
            return False
        if keyword in _ONE_SUBSCHEMA:
            subschemas: list[object] = [value]
        elif keyword in _SUBSCHEMA_LISTS:
            subschemas = list(value) if isinstance(value, list) else [None]
        elif keyword in _SUBSCHEMA_MAPS:
            subschemas = list(value.values()) if isinstance(value, Mapping) else [None]
        else:
            continue
        if not all(uses_agreed_keywords_only(subschema) for subschema in subschemas):
            return False
    return True


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


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def json_path(parent: str, key: str | int) -> str:
    """`parent` extended by one key or index, as error paths are written (`$.a`, `$[0]`, `$['a b']`).

    Every route names the field an error is about this way: `json_path("$", name)` for a
    top-level property, `json_path("$.instances", 3)` for a row.
    """
    if isinstance(key, int):
        return f"{parent}[{key}]"
    if _IDENTIFIER.fullmatch(key):
        return f"{parent}.{key}"
    return f"{parent}[{key!r}]"
