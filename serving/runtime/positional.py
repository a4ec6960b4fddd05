"""Rows of values as model payloads: positional arguments mapped to the input schema's properties.

Two callers send a row as a list of values rather than an object: a BigQuery remote
function called with several scalar arguments (`fn(col_a, col_b)`), and Vertex AI batch
prediction with `instanceConfig.instanceType: "array"`. Both mean "the values of the
model's inputs, in order", and the only order a JSON Schema declares is that of its
top-level `properties` (a handler's INPUT_SCHEMA is a Python dict literal, whose order
is kept). A `null` value is an absent property, as a SQL NULL is.

A schema without that order (not an object, no `properties`, or combinators such as
`oneOf` / `allOf` at the top, whose properties could come from several places) cannot
take positional rows: `PositionalOrder.of(schema)` is then None and the caller refuses
the row with a message saying to send an object instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from serving.errors import ValidationFailed

# Top-level keywords that would make the property list incomplete or ambiguous.
_COMBINATORS = ("allOf", "anyOf", "oneOf", "if", "$ref", "dependentSchemas", "patternProperties")


@dataclass(frozen=True)
class PositionalOrder:
    """The input schema's top-level property names, in declared order."""

    names: tuple[str, ...]

    @classmethod
    def of(cls, schema: Mapping[str, Any]) -> PositionalOrder | None:
        """The order of `schema`'s properties, or None when it has no flat order to map to."""
        properties = schema.get("properties")
        if schema.get("type") != "object" or not isinstance(properties, Mapping) or not properties:
            return None
        if any(keyword in schema for keyword in _COMBINATORS):
            return None
        return cls(tuple(properties))

    def payload(self, values: Sequence[Any], *, where: str) -> dict[str, Any]:
        """The object these values stand for; `ValidationFailed` (at `where`) for a wrong count."""
        if len(values) != len(self.names):
            raise ValidationFailed(
                f"{len(values)} values given, but the model takes {len(self.names)}, in this order: "
                f"{', '.join(self.names)}",
                path=where,
            )
        return {name: value for name, value in zip(self.names, values, strict=True) if value is not None}


def refusal(model: str, *, where: str) -> ValidationFailed:
    """The 400 for a positional row sent to a model whose schema has no flat property order."""
    return ValidationFailed(
        f"Model {model} takes no positional values: its input schema has no flat list of properties to "
        "map them to; send each row as one JSON object instead",
        path=where,
    )
