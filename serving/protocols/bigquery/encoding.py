"""BigQuery's JSON encoding of SQL values, turned back into what the model's schema asks for.

BigQuery sends a remote function's arguments as `TO_JSON_STRING` would write them: an
INT64 beyond +/-2^53 and a NUMERIC or BIGNUMERIC that a double cannot hold exactly may be
strings, BYTES are base64 strings (what a binary property takes already), DATE,
DATETIME and TIMESTAMP are strings, and a SQL NULL is `null`. `coerce` walks a payload
beside its schema: a string where the schema says `integer` or `number` becomes that
number, and a `null` where the schema declares a type without null is dropped, so that it reads
as the absent property it stands for. Anything else is left for the schema check to
judge, which then names the field.

Hand-written because no library maps BigQuery's encoding onto a JSON Schema; it follows
`properties`, `items` and `prefixItems` only (the places a STRUCT or ARRAY column lands).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

_INTEGER = re.compile(r"[+-]?[0-9]{1,4300}")
_DECIMAL = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]{1,4})?")
# A STRUCT nests at most 15 levels deep in BigQuery; deeper input is left as it is.
_MAX_DEPTH = 32


def _types(schema: Mapping[str, Any]) -> tuple[str, ...]:
    declared = schema.get("type")
    if isinstance(declared, str):
        return (declared,)
    if isinstance(declared, list):
        return tuple(t for t in declared if isinstance(t, str))
    return ()


def _number(text: str, types: tuple[str, ...]) -> Any:
    stripped = text.strip()
    if "integer" in types and _INTEGER.fullmatch(stripped):
        return int(stripped)
    if "number" in types and _DECIMAL.fullmatch(stripped):
        if _INTEGER.fullmatch(stripped):
            return int(stripped)
        value = float(stripped)
        return value if math.isfinite(value) else text
    if "integer" in types and _DECIMAL.fullmatch(stripped):
        # NUMERIC "3.0" for an integer property: whole numbers only.
        value = float(stripped)
        return int(value) if math.isfinite(value) and value.is_integer() else text
    return text


def coerce(value: Any, schema: Any, depth: int = 0) -> Any:
    """`value` with BigQuery's string-encoded numbers and NULLs read as the schema wants them."""
    if not isinstance(schema, Mapping) or depth > _MAX_DEPTH:
        return value
    if isinstance(value, str):
        types = _types(schema)
        return _number(value, types) if ("integer" in types or "number" in types) and "string" not in types else value
    if isinstance(value, dict):
        properties = schema.get("properties")
        if not isinstance(properties, Mapping):
            return value
        coerced: dict[str, Any] = {}
        for key, item in value.items():
            subschema = properties.get(key)
            if item is None and not _accepts_null(subschema):
                continue
            coerced[key] = coerce(item, subschema, depth + 1)
        return coerced
    if isinstance(value, list):
        prefix = schema.get("prefixItems")
        items = schema.get("items")
        prefix = prefix if isinstance(prefix, list) else []
        return [coerce(item, prefix[i] if i < len(prefix) else items, depth + 1) for i, item in enumerate(value)]
    return value


def _accepts_null(schema: Any) -> bool:
    # Only a declared type without "null" turns a null into an absent property: where the
    # schema says nothing (or does not know the key), the null stays for the schema to judge.
    if not isinstance(schema, Mapping):
        return True
    types = _types(schema)
    return not types or "null" in types
