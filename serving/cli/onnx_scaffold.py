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
- with `--features a,b,c`, a single float input `[N, 3]` becomes three named number fields
  (names that are not field names are turned into ones: serving/cli/onnx_fields.py).
- one dynamic dimension after the batch one (a sequence length) becomes an array of any
  length; such a graph is served one request per call (rows of different lengths
  cannot be stacked without padding, which only the model's author can define).
Outputs must be tensors of known rank with a batch dimension; each becomes a field of
the result. Sequences and maps (skl2onnx's ZipMap: convert with `zipmap=False`), unknown
shapes and several dynamic dimensions in one input are refused. A classifier's scores
and label get class names with `--classes` (or the graph's string labels), and
`--example` rows become the input schema's examples (serving/cli/onnx_fields.py).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from string import Template
from typing import Any

import numpy as np

from serving.cli import onnx_templates as templates
from serving.cli.onnx_fields import ClassPlan, UnsupportedGraph, feature_fields, parse_examples
from serving.kit import OnnxModel, OnnxModelError, TensorSpec

__all__ = ["GraphPlan", "UnsupportedGraph", "load_graph", "onnx_scaffold_files", "plan_graph", "python_literal"]


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
    titles: tuple[str | None, ...] = ()  # each feature's name as given, where its field differs
    classes: ClassPlan | None = None  # class names for a classifier's scores and label
    examples: tuple[dict[str, Any], ...] = ()  # real rows (--example); else zeros

    def input_schema(self) -> dict[str, Any]:
        """The handler's INPUT_SCHEMA."""
        if self.features is not None:
            item = self.inputs[0].schema["items"]
            titles = self.titles or (None,) * len(self.features)
            properties = {
                feature: {**item, "title": title} if title else dict(item)
                for feature, title in zip(self.features, titles, strict=True)
            }
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
            "examples": list(self.examples) or [example],
        }

    def output_schema(self) -> dict[str, Any]:
        """The handler's OUTPUT_SCHEMA."""
        properties = dict(self.outputs)
        if self.classes is not None:
            properties = self.classes.output_schemas(properties)
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


def plan_graph(
    model: OnnxModel,
    features: Sequence[str] | None = None,
    classes: ClassPlan | None = None,
    examples: Sequence[str] = (),
) -> GraphPlan:
    """How requests map onto `model`'s inputs and its outputs onto results; `UnsupportedGraph` if they cannot.

    `features` are `--features` names, `classes` what `plan_classes` decided, `examples`
    the `--example` texts (JSON rows), checked against the input schema.
    """
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
    fields = _check_features(model, inputs, features) if features is not None else None
    plan = GraphPlan(
        tuple(inputs),
        tuple(name for name, _ in fields) if fields is not None else None,
        tuple(outputs),
        batchable,
        titles=tuple(title for _, title in fields) if fields is not None else (),
        classes=classes,
    )
    if examples:
        plan = replace(plan, examples=tuple(parse_examples(examples, plan.input_schema(), fields)))
    return plan


def _check_features(model: OnnxModel, inputs: list[InputPlan], features: Sequence[str]) -> list[tuple[str, str | None]]:
    found = "; ".join(spec.describe() for spec in model.inputs)
    spec = model.inputs[0]
    if len(inputs) != 1 or spec.element_type not in ("float", "double") or spec.shape is None or len(spec.shape) != 2:
        raise UnsupportedGraph(f"--features needs one float input of shape [N, k]; the graph has {found}")
    width = spec.shape[1]
    if width != len(features):
        raise UnsupportedGraph(f"--features names {len(features)} features; the graph's input {found} takes {width}")
    return feature_fields(features)


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


def _result_code(classes: ClassPlan | None) -> dict[str, str]:
    """The model code's class table and `_result` function: plain outputs, or class names."""
    if classes is None:
        return {"result_table": "", "result_function": templates.RESULT_BY_OUTPUT}
    if classes.label_from_graph:
        label_table = Template(templates.LABEL_FROM_GRAPH).substitute(
            label=_string(classes.label),
            graph_labels=python_literal(list(classes.graph_labels), prefix=len("GRAPH_LABELS = ")),
        )
        label_index = "GRAPH_LABELS.index(result[LABEL])"
    else:
        label_table = Template(templates.LABEL_ADDED).substitute(label=_string(classes.label))
        label_index = "scores.index(max(scores))"
    table = templates.CLASSES_TABLE.substitute(
        classes=python_literal(list(classes.names), prefix=len("CLASSES = ")),
        scores=_string(classes.scores),
        label_table=label_table,
    )
    function = templates.RESULT_BY_CLASS.substitute(label_index=label_index)
    return {"result_table": table, "result_function": function}


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
        **_result_code(plan.classes),
    )
    test = templates.TEST.substitute(values)
    return {
        directory / "handlers" / f"{module}.py": handler,
        directory / "models" / f"{module}.py": model,
        directory / "tests" / "handlers" / f"test_{module}.py": test,
    }
