"""`new-model NAME --from model.onnx`: a handler whose schemas come from an ONNX graph.

`plan_graph` reads the graph's inputs and outputs (through `OnnxModel`, so with ONNX
Runtime only) and decides how a JSON request becomes its input arrays and its output
arrays become a JSON result, or refuses with `UnsupportedGraph` saying what it found.
`onnx_scaffold_files` renders the handler, the model code and a test that pass as
written; the model file itself is copied beside the model code.

The mapping, per input (its first dimension is the batch, dynamic or fixed at 1):
- `[N]`: one JSON value per request; `[N, k]`: an array of k values; `[N, a, b]`:
  nested arrays. Element types: float, double, float16 -> number; (u)int -> integer
  within the type's range; bool -> boolean; string -> string.
- with `--features a,b,c`, a single float input `[N, 3]` becomes three named number fields.
- one dynamic dimension after the batch one (a sequence length) becomes an array of any
  length; such a graph is served one request per call (rows of different lengths
  cannot be stacked without padding, which only the model's author can define).
Outputs must be tensors of known rank with a batch dimension; each becomes a field of
the result. Sequences and maps (skl2onnx's ZipMap: convert with `zipmap=False`), unknown
shapes and several dynamic dimensions in one input are refused.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any

import numpy as np

from serving.cli import onnx_templates as templates
from serving.kit import OnnxModel, OnnxModelError, TensorSpec

_FEATURE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


class UnsupportedGraph(ValueError):
    """The graph cannot be served by a generated handler; the message says what was found."""


@dataclass(frozen=True)
class InputPlan:
    """How one graph input is filled from requests."""

    name: str
    dtype: str  # numpy dtype name for np.asarray ("float32", "int64", "object")
    schema: dict[str, Any]
    example: Any


@dataclass(frozen=True)
class GraphPlan:
    """A graph's request and result mapping, as `plan_graph` decided it."""

    inputs: tuple[InputPlan, ...]
    features: tuple[str, ...] | None  # named fields of the single tabular input, if asked
    outputs: tuple[tuple[str, dict[str, Any]], ...]  # output name, schema of one row
    batchable: bool  # requests can be stacked into one run

    def input_schema(self) -> dict[str, Any]:
        """The handler's INPUT_SCHEMA."""
        if self.features is not None:
            item = self.inputs[0].schema["items"]
            properties = {feature: dict(item) for feature in self.features}
            example: dict[str, Any] = {feature: 0.0 for feature in self.features}
        else:
            properties = {plan.name: plan.schema for plan in self.inputs}
            example = {plan.name: plan.example for plan in self.inputs}
        return {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": properties,
            "required": list(properties),
            "additionalProperties": False,
            "examples": [example],
        }

    def output_schema(self) -> dict[str, Any]:
        """The handler's OUTPUT_SCHEMA."""
        properties = dict(self.outputs)
        return {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": properties,
            "required": list(properties),
            "additionalProperties": False,
        }


def _element_schema(spec: TensorSpec, what: str) -> tuple[dict[str, Any], str, Any]:
    """JSON Schema, numpy dtype name and example value of one element of `spec`.

    An integer input is bounded by its type's range, so a value numpy cannot hold is a 400.
    """
    element = spec.element_type
    if element in ("float", "double", "float16"):
        return {"type": "number"}, str(spec.dtype), 0.0
    if spec.dtype is not None and spec.dtype.kind in "iu":
        info = np.iinfo(spec.dtype)
        return {"type": "integer", "minimum": int(info.min), "maximum": int(info.max)}, str(spec.dtype), 0
    if element == "bool":
        return {"type": "boolean"}, "bool", False
    if element == "string":
        return {"type": "string"}, "object", "text"
    raise UnsupportedGraph(f"{what} {spec.describe()}: JSON has no values of type {spec.onnx_type}")


def _nest(schema: dict[str, Any], example: Any, dims: Sequence[int | str | None]) -> tuple[dict[str, Any], Any]:
    """Wrap an element schema in arrays, innermost dimension last; a non-int dimension has any length."""
    for dim in reversed(dims):
        if isinstance(dim, int):
            schema = {"type": "array", "items": schema, "minItems": dim, "maxItems": dim}
            example = [example] * dim
        else:
            schema = {"type": "array", "items": schema, "minItems": 1}
            example = [example]
    return schema, example


def _batch_dim_problem(spec: TensorSpec, what: str) -> str | None:
    if spec.shape is None:
        return f"{what} {spec.describe()}: its shape is unknown"
    if len(spec.shape) == 0:
        # ONNX Runtime shows an undeclared shape as [] too.
        return f"{what} {spec.describe()}: no batch dimension (a scalar, or a shape the graph does not declare)"
    first = spec.shape[0]
    if isinstance(first, int) and first != 1:
        return f"{what} {spec.describe()}: its first dimension is fixed at {first}, not a batch dimension"
    return None


def plan_graph(model: OnnxModel, features: Sequence[str] | None = None) -> GraphPlan:
    """How requests map onto `model`'s inputs and its outputs onto results; `UnsupportedGraph` if they cannot."""
    if not model.inputs:
        raise UnsupportedGraph("the graph has no inputs")
    inputs: list[InputPlan] = []
    batchable = True
    for spec in model.inputs:
        if not spec.is_tensor:
            raise UnsupportedGraph(f"input {spec.name!r} is {spec.onnx_type}, not a tensor")
        problem = _batch_dim_problem(spec, "input")
        if problem:
            raise UnsupportedGraph(problem)
        assert spec.shape is not None  # checked by _batch_dim_problem
        rest = spec.shape[1:]
        dynamic = [i + 1 for i, dim in enumerate(rest) if not isinstance(dim, int)]
        if len(dynamic) > 1:
            raise UnsupportedGraph(
                f"input {spec.describe()}: dimensions {dynamic} are all dynamic; a generated handler "
                "handles at most one beyond the batch dimension"
            )
        element, dtype, example = _element_schema(spec, "input")
        schema, example = _nest(element, example, rest)
        batchable = batchable and not dynamic and not isinstance(spec.shape[0], int)
        inputs.append(InputPlan(spec.name, dtype, schema, example))
    outputs: list[tuple[str, dict[str, Any]]] = []
    for spec in model.outputs:
        if not spec.is_tensor:
            hint = " (skl2onnx: convert with options={'zipmap': False})" if "map(" in spec.onnx_type else ""
            raise UnsupportedGraph(f"output {spec.name!r} is {spec.onnx_type}, not a tensor{hint}")
        problem = _batch_dim_problem(spec, "output")
        if problem:
            raise UnsupportedGraph(problem)
        assert spec.shape is not None
        element, _, example = _element_schema(spec, "output")
        element.pop("minimum", None)
        element.pop("maximum", None)
        outputs.append((spec.name, _nest(element, example, spec.shape[1:])[0]))
    if features is not None:
        _check_features(model, inputs, features)
    return GraphPlan(tuple(inputs), tuple(features) if features is not None else None, tuple(outputs), batchable)


def _check_features(model: OnnxModel, inputs: list[InputPlan], features: Sequence[str]) -> None:
    found = "; ".join(spec.describe() for spec in model.inputs)
    spec = model.inputs[0]
    if len(inputs) != 1 or spec.element_type not in ("float", "double") or spec.shape is None or len(spec.shape) != 2:
        raise UnsupportedGraph(f"--features needs one float input of shape [N, k]; the graph has {found}")
    width = spec.shape[1]
    if width != len(features):
        raise UnsupportedGraph(f"--features names {len(features)} features; the graph's input {found} takes {width}")
    bad = [name for name in features if not _FEATURE_NAME.fullmatch(name)]
    if bad or len(set(features)) != len(features):
        raise UnsupportedGraph(f"--features must be distinct names of letters, digits and '_'; got {list(features)}")


def load_graph(path: Path) -> OnnxModel:
    """The ONNX model at `path`; `UnsupportedGraph` naming the file when ONNX Runtime cannot load it."""
    try:
        return OnnxModel(path, intra_op_threads=1)
    except OnnxModelError as exc:
        raise UnsupportedGraph(str(exc)) from None


def python_literal(value: Any, indent: int = 0, prefix: int = 0) -> str:
    """`value` (JSON-like data) as Python source in the layout `ruff format` keeps.

    A container holding only scalars stays on one line when that line (`indent` spaces,
    `prefix` characters of key, the value and a comma) fits in 100 columns; any other
    non-empty container is spread over lines with a trailing comma, which ruff keeps
    expanded. So the generated files pass `ruff format --check` as written.
    """
    if isinstance(value, dict | list) and value:
        members = value.values() if isinstance(value, dict) else value
        scalars = all(not isinstance(item, dict | list) for item in members)
        inline = _inline(value)
        if scalars and indent + prefix + len(inline) + 1 <= 100:
            return inline
        pad = " " * (indent + 4)
        if isinstance(value, dict):
            items = []
            for key, item in value.items():
                head = f"{_string(key)}: "
                items.append(f"{pad}{head}{python_literal(item, indent + 4, len(head))},")
            return "{\n" + "\n".join(items) + "\n" + " " * indent + "}"
        items = [f"{pad}{python_literal(item, indent + 4)}," for item in value]
        return "[\n" + "\n".join(items) + "\n" + " " * indent + "]"
    return _inline(value)


def _inline(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_string(key)}: {_inline(item)}" for key, item in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_inline(item) for item in value) + "]"
    if isinstance(value, bool | int | float) or value is None:
        return repr(value)
    return _string(str(value))


def _string(text: str) -> str:
    """A Python string literal quoted as ruff formats it: double quotes unless that adds escapes."""
    literal = repr(text)
    if literal.startswith("'") and '"' not in text and "'" not in text:
        return f'"{literal[1:-1]}"'
    return literal


def onnx_scaffold_files(
    name: str, module: str, cls: str, directory: Path, plan: GraphPlan, model_file: str
) -> dict[Path, str]:
    """The handler, model code and test for a model served from the graph `plan` describes."""
    values = {"name": name, "module": module, "cls": cls, "model_file": model_file}
    if plan.features is not None:
        feeds_table = (
            f"# The request's fields, in the order of the columns of the graph's input.\n"
            f"FEATURES = {python_literal(list(plan.features))}\n"
            f"INPUT = {json.dumps(plan.inputs[0].name)}"
        )
        feeds_function = Template(templates.FEEDS_BY_FEATURE).substitute(dtype=plan.inputs[0].dtype)
    else:
        inputs = {plan_input.name: plan_input.dtype for plan_input in plan.inputs}
        feeds_table = (
            "# Each input of the graph (and its numpy dtype), filled from the request field of the same name.\n"
            f"INPUTS = {python_literal(inputs)}"
        )
        feeds_function = templates.FEEDS_BY_INPUT
    handler = templates.HANDLER.substitute(
        values,
        input_schema=python_literal(plan.input_schema()),
        output_schema=python_literal(plan.output_schema()),
        predict_batch=Template(templates.PREDICT_BATCH).substitute(values) if plan.batchable else "",
    )
    model = templates.MODEL.substitute(
        values,
        feeds_table=feeds_table,
        outputs=python_literal([output for output, _ in plan.outputs]),
        feeds_function=feeds_function,
    )
    test = templates.TEST.substitute(values)
    return {
        directory / "handlers" / f"{module}.py": handler,
        directory / "models" / f"{module}.py": model,
        directory / "tests" / f"test_{module}.py": test,
    }
