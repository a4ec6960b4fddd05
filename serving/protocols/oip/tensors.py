"""A handler's JSON Schemas as Open Inference Protocol (KServe v2) tensors, and back.

Inputs: each property of the object INPUT_SCHEMA is an input tensor of that name whose
first dimension is the batch (one payload per row):

| property schema                          | datatype (also accepted)  | shape     |
|------------------------------------------|---------------------------|-----------|
| `string` (or an `enum`/`const` of them)  | BYTES, UTF-8 text         | [-1]      |
| `string` with `contentEncoding: base64`  | BYTES, the raw bytes      | [-1]      |
| `integer`                                | INT64 (INT32)             | [-1]      |
| `number`                                 | FP64 (FP32, INT64, INT32) | [-1]      |
| `boolean`                                | BOOL                      | [-1]      |
| `array` of one of those, k items         | that datatype             | [-1, k]   |
| `object`                                 | BYTES, JSON text          | [-1]      |

(k is -1 unless `minItems == maxItems`.) Anything else in an input schema (no `type`,
a list of types, `oneOf`, `$ref`...) cannot be a tensor: the model's metadata says which
property, and `infer` answers 400 naming it.

Outputs: each property of an object OUTPUT_SCHEMA is an output tensor, mapped the same
way, except that what the table cannot map (a nested object, an array of varying
length, a property with no `type`) is BYTES holding its JSON. A result that is not an
object (or a handler without OUTPUT_SCHEMA) is one tensor named `result`.

This module turns decoded tensor values into payloads and results into tensor values;
`serving/protocols/oip/wire.py` reads and writes the bytes.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# What kind of JSON value a tensor element stands for.
TEXT, BINARY, JSON_TEXT, INTEGER, NUMBER, BOOLEAN = "text", "binary", "json", "integer", "number", "boolean"
DATATYPES = {TEXT: "BYTES", BINARY: "BYTES", JSON_TEXT: "BYTES", INTEGER: "INT64", NUMBER: "FP64", BOOLEAN: "BOOL"}
ACCEPTED = {
    TEXT: ("BYTES",),
    BINARY: ("BYTES",),
    JSON_TEXT: ("BYTES",),
    INTEGER: ("INT64", "INT32"),
    NUMBER: ("FP64", "FP32", "INT64", "INT32"),
    BOOLEAN: ("BOOL",),
}
RESULT = "result"


class Unmappable(ValueError):
    """A schema property that no tensor can carry; the message names it."""


class TensorError(ValueError):
    """Tensor data that does not fit the model's inputs; the message says how (a 400)."""


@dataclass(frozen=True)
class TensorSpec:
    """One tensor: its name, the kind of its elements and its shape after the batch."""

    name: str
    kind: str
    width: int | None  # None: one element per row; -1: any number; k: exactly k

    @property
    def datatype(self) -> str:
        return DATATYPES[self.kind]

    @property
    def shape(self) -> list[int]:
        """The shape with -1 for the batch (and for a width that varies)."""
        return [-1] if self.width is None else [-1, self.width]

    def metadata(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": self.shape}


@dataclass(frozen=True)
class Signature:
    """A model's tensors, or why it has none (`problem`)."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    result_only: bool  # the whole result is the one tensor `result`
    problem: str | None = None


def _scalar_kind(schema: Mapping[str, Any]) -> str | None:
    kind = schema.get("type")
    if kind == "string":
        return BINARY if schema.get("contentEncoding") == "base64" else TEXT
    if kind in (INTEGER, NUMBER, BOOLEAN):
        return str(kind)
    if kind is None:
        values = schema["enum"] if isinstance(schema.get("enum"), list) else [schema.get("const")]
        if ("enum" in schema or "const" in schema) and all(isinstance(v, str) for v in values):
            return TEXT
    return None


def _tensor(name: str, schema: Any, output: bool) -> TensorSpec:
    if isinstance(schema, Mapping):
        kind = _scalar_kind(schema)
        if kind is not None:
            return TensorSpec(name, kind, None)
        if schema.get("type") == "object":
            return TensorSpec(name, JSON_TEXT, None)
        items = schema.get("items")
        if schema.get("type") == "array" and isinstance(items, Mapping):
            item_kind = _scalar_kind(items)
            low, high = schema.get("minItems"), schema.get("maxItems")
            fixed = low if isinstance(low, int) and low == high and low > 0 else None
            if item_kind is not None and (fixed is not None or not output):
                return TensorSpec(name, item_kind, fixed if fixed is not None else -1)
    if output:
        return TensorSpec(name, JSON_TEXT, None)
    raise Unmappable(
        f"input property {name!r} cannot be a tensor: give it a `type` of string, integer, number, boolean, "
        "object, or array of one of the first four"
    )


def signature(input_schema: Mapping[str, Any], output_schema: Mapping[str, Any] | None) -> Signature:
    """The tensors a handler's schemas map to; `problem` says why when they do not."""
    properties = input_schema.get("properties") if input_schema.get("type") == "object" else None
    try:
        if not isinstance(properties, Mapping) or not properties:
            raise Unmappable("INPUT_SCHEMA is not an object with `properties`, so it has no named input tensors")
        inputs = tuple(_tensor(name, schema, output=False) for name, schema in properties.items())
    except Unmappable as exc:
        return Signature((), (), False, str(exc))
    is_object = output_schema is not None and output_schema.get("type") == "object"
    out_properties = output_schema.get("properties") if output_schema is not None and is_object else None
    if isinstance(out_properties, Mapping) and out_properties:
        outputs = tuple(_tensor(name, schema, output=True) for name, schema in out_properties.items())
        return Signature(inputs, outputs, False)
    return Signature(inputs, (_tensor(RESULT, output_schema or {}, output=True),), True)


def _element(spec: TensorSpec, value: Any, where: str) -> Any:
    """One decoded tensor element as the JSON value the handler expects."""
    if spec.kind == TEXT:
        if isinstance(value, bytes):
            try:
                return value.decode("utf-8")
            except UnicodeDecodeError:
                raise TensorError(f"{where} is not UTF-8 text") from None
        return value
    if spec.kind == BINARY:  # handlers take binary input as base64 text
        return base64.b64encode(value).decode("ascii") if isinstance(value, bytes) else value
    if spec.kind == JSON_TEXT:
        try:
            return json.loads(value)
        except (ValueError, RecursionError):
            raise TensorError(f"{where} is not a JSON document") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise TensorError(f"{where} is {value}, which JSON (and so the model) cannot take")
    return value


def payloads(spec_by_name: Mapping[str, TensorSpec], tensors: Mapping[str, tuple[list[int], list[Any]]]) -> list[Any]:
    """One payload per batch row from decoded input tensors (`name -> (shape, flat values)`).

    Shapes are checked here: every tensor's first dimension is the batch size, and a
    tensor has one element per row (shape [n] or [n, 1]) or its property's width.
    """
    rows: int | None = None
    columns: dict[str, list[Any]] = {}
    for name, (shape, values) in tensors.items():
        spec = spec_by_name[name]
        if not shape or shape[0] < 1:
            raise TensorError(f"input {name!r}: the shape's first dimension is the batch size and must be >= 1")
        if rows is not None and shape[0] != rows:
            raise TensorError(f"input {name!r} has {shape[0]} rows, the other inputs {rows}")
        rows = shape[0]
        if spec.width is None:
            if shape not in ([rows], [rows, 1]):
                raise TensorError(f"input {name!r} must have shape [{rows}] or [{rows}, 1] (one value per row)")
            columns[name] = [_element(spec, value, f"input {name!r} row {i}") for i, value in enumerate(values)]
            continue
        if len(shape) != 2 or (spec.width != -1 and shape[1] != spec.width):
            width = "k" if spec.width == -1 else spec.width
            raise TensorError(f"input {name!r} must have shape [{rows}, {width}] (one array per row)")
        width = shape[1]
        elements = [_element(spec, value, f"input {name!r} row {i // max(width, 1)}") for i, value in enumerate(values)]
        columns[name] = [elements[row * width : (row + 1) * width] for row in range(rows)]
    return [{name: column[row] for name, column in columns.items()} for row in range(rows or 0)]


class OutputMismatch(ValueError):
    """A result that does not fit the output tensors its schema promised (a bug: 500)."""


def _output_element(spec: TensorSpec, value: Any) -> Any:
    if spec.kind == JSON_TEXT:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if spec.kind in (TEXT, BINARY):
        if not isinstance(value, str):
            raise OutputMismatch(f"output {spec.name!r} holds a {type(value).__name__} where a string belongs")
        if spec.kind == BINARY:
            try:
                return base64.b64decode(value, validate=True)
            except binascii.Error:
                raise OutputMismatch(f"output {spec.name!r} is not base64") from None
        return value
    expected: tuple[type, ...] = {BOOLEAN: (bool,), INTEGER: (int,), NUMBER: (int, float)}[spec.kind]
    if not isinstance(value, expected) or (spec.kind != BOOLEAN and isinstance(value, bool)):
        raise OutputMismatch(f"output {spec.name!r} holds a {type(value).__name__} where {spec.kind} values belong")
    if spec.kind == INTEGER and isinstance(value, int) and not -(2**63) <= value < 2**63:
        raise OutputMismatch(f"output {spec.name!r} holds {value}, which INT64 cannot")
    return value


def output_values(spec: TensorSpec, results: list[Any], result_only: bool) -> tuple[list[int], list[Any]]:
    """An output tensor's shape and flat values (bytes for BINARY) from every row's result."""
    values: list[Any] = []
    width = spec.width
    for row, result in enumerate(results):
        if result_only:
            value = result
        elif isinstance(result, Mapping) and spec.name in result:
            value = result[spec.name]
        else:
            raise OutputMismatch(f"result row {row} has no {spec.name!r}")
        if width is None:
            values.append(_output_element(spec, value))
            continue
        if not isinstance(value, list) or len(value) != width:
            raise OutputMismatch(f"output {spec.name!r} row {row} is not an array of {width}")
        values.extend(_output_element(spec, item) for item in value)
    shape = [len(results)] if width is None else [len(results), width]
    return shape, values
