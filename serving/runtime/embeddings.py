"""A handler's declaration that it produces embeddings, for `POST /v1/embeddings`.

A handler whose model turns a text into a vector declares, beside its schemas:

```python
EMBEDDINGS = {"input": "text", "output": "embedding"}

def count_tokens(model, texts: list[str]) -> list[int]:
    ...  # how many tokens the model reads of each text
```

`input` names the string property of the object INPUT_SCHEMA that carries the text (the
only required property), `output` the property of the object OUTPUT_SCHEMA that holds
the vector (an array of numbers). `count_tokens` gives OpenAI's `usage` real numbers; it
is required, so no response ever reports made-up counts. The model's dimension is the
output property's `minItems` when it equals `maxItems`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

EMBEDDINGS_KEYS = frozenset({"input", "output"})


class EmbeddingsDeclarationError(ValueError):
    """EMBEDDINGS (or count_tokens) is malformed: `expected` and `found` say how."""

    def __init__(self, expected: str, found: str) -> None:
        super().__init__(f"expected {expected}, found {found}")
        self.expected = expected
        self.found = found


@dataclass(frozen=True)
class EmbeddingsSpec:
    """Where the text goes in a payload, where the vector is in a result, and its length."""

    input: str
    output: str
    dimensions: int | None
    count_tokens: Callable[[Any, list[str]], list[int]]

    def payload(self, text: str) -> dict[str, str]:
        """The handler payload that embeds `text`."""
        return {self.input: text}

    def vector(self, result: Any) -> list[float]:
        """The embedding in a handler result (already checked against OUTPUT_SCHEMA when that is on)."""
        vector = result[self.output] if isinstance(result, Mapping) else None
        if not isinstance(vector, list):
            raise TypeError(f"result has no array {self.output!r}")
        return vector


def _property(schema: Mapping[str, Any] | None, name: str) -> Mapping[str, Any] | None:
    if not isinstance(schema, Mapping) or schema.get("type") != "object":
        return None
    properties = schema.get("properties")
    found = properties.get(name) if isinstance(properties, Mapping) else None
    return found if isinstance(found, Mapping) else None


def parse_embeddings(
    raw: object,
    count_tokens: Callable[[Any, list[str]], list[int]] | None,
    input_schema: Mapping[str, Any],
    output_schema: Mapping[str, Any] | None,
) -> EmbeddingsSpec:
    """Check an `EMBEDDINGS` declaration against the handler's schemas.

    Raises `EmbeddingsDeclarationError` saying what was expected and what was found.
    """
    shape = 'EMBEDDINGS to be {"input": <text property>, "output": <vector property>}'
    if not isinstance(raw, Mapping) or set(raw) != EMBEDDINGS_KEYS or not all(isinstance(v, str) for v in raw.values()):
        raise EmbeddingsDeclarationError(shape, repr(raw))
    input_name, output_name = raw["input"], raw["output"]
    text = _property(input_schema, input_name)
    if text is None or text.get("type") != "string":
        raise EmbeddingsDeclarationError(
            f"INPUT_SCHEMA to be an object with a string property {input_name!r} (EMBEDDINGS['input'])",
            repr(dict(text)) if text is not None else "no such property",
        )
    required = input_schema.get("required", [])
    others = [name for name in required if name != input_name] if isinstance(required, list) else []
    if others:
        raise EmbeddingsDeclarationError(
            f"no required input property besides {input_name!r} (an embeddings request carries only text)",
            f"required {others!r}",
        )
    vector = _property(output_schema, output_name)
    items = vector.get("items") if vector is not None else None
    numbers = isinstance(items, Mapping) and items.get("type") == "number"
    if vector is None or vector.get("type") != "array" or not numbers:
        raise EmbeddingsDeclarationError(
            f"OUTPUT_SCHEMA to be an object with an array-of-numbers property {output_name!r} (EMBEDDINGS['output'])",
            repr(dict(vector)) if vector is not None else "no such property",
        )
    if count_tokens is None:
        raise EmbeddingsDeclarationError(
            "a function `count_tokens(model, texts)` giving each text's token count (OpenAI's `usage`)", "none"
        )
    low, high = vector.get("minItems"), vector.get("maxItems")
    dimensions = low if isinstance(low, int) and low == high and low > 0 else None
    return EmbeddingsSpec(input=input_name, output=output_name, dimensions=dimensions, count_tokens=count_tokens)
