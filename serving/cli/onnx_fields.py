"""What `new-model --from` takes beside the graph: feature names, class names and example rows.

- `--features` names the columns of a single float input. A name that is not a plain
  field name (`od280/od315_of_diluted_wines`, `color intensity`) becomes one by the rule
  of `field_name`, and the original is kept as the field's title (the form's label).
- `--classes` names a classifier's classes, in the order of its score columns; without it,
  string class labels the graph carries (a scikit-learn classifier trained on strings)
  name them. The scores become an object keyed by class name and the label a class name.
- `--example` is a real row (JSON): it goes into the input schema's `examples`, which the
  demo page's "Fill example" and the generated tests use.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from serving.kit import TensorSpec

MAX_FIELD_LENGTH = 64
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_NOT_FIELD = re.compile(r"[^A-Za-z0-9_]+")
# Attributes of ONNX-ML classifiers (LinearClassifier, TreeEnsembleClassifier, SVMClassifier,
# ZipMap) holding the class labels, in the order of the score columns.
_LABEL_ATTRIBUTES = ("classlabels_strings", "classlabels_int64s", "classlabels_ints")
# Which of several [N, k] float outputs holds the class scores, by the converters' names.
_SCORE_NAMES = ("probabilities", "output_probability", "probability", "scores", "logits")
_FLOATS = ("float", "double", "float16")


class UnsupportedGraph(ValueError):
    """The graph (or an option about it) cannot be served by a generated handler; the message says why."""


def split_names(value: str, option: str) -> list[str]:
    """The names an option lists: comma-separated, or a JSON array of strings when a name holds a comma."""
    if value.lstrip().startswith("["):
        try:
            names = json.loads(value)
        except json.JSONDecodeError as exc:
            raise UnsupportedGraph(f"{option}: not a JSON array of strings ({exc})") from None
        if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
            raise UnsupportedGraph(f"{option}: not a JSON array of strings")
        return [name.strip() for name in names]
    return [part.strip() for part in value.split(",")]


def field_name(name: str) -> str:
    """`name` as a request field: ASCII letters, digits and '_', not starting with a digit, at most 64.

    A name that already is one stays as it is. Otherwise accents are dropped (é -> e),
    each run of other characters becomes one '_', '_' at either end is removed, a leading
    digit gets a '_' before it, and the result is cut at 64 characters. Empty when nothing
    is left. Written here because the rule is this project's (a JSON path like
    `$.od280_od315` must name the field unambiguously), not a library's.
    """
    if _FIELD.fullmatch(name):
        return name
    plain = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    field = _NOT_FIELD.sub("_", plain).strip("_")
    if field[:1].isdigit():
        field = "_" + field
    return field[:MAX_FIELD_LENGTH]


def feature_fields(names: Sequence[str]) -> list[tuple[str, str | None]]:
    """Each feature's field name and, when it differs from the name given, that name as its title.

    `UnsupportedGraph` names a feature that has no field name, or two that get the same one.
    """
    fields: list[tuple[str, str | None]] = []
    given: dict[str, str] = {}
    for name in names:
        field = field_name(name)
        if not field:
            raise UnsupportedGraph(f"--features: {name!r} has no letter or digit to make a field name of")
        if field in given:
            same = "is given twice" if given[field] == name else f"and {given[field]!r} both become the field {field!r}"
            raise UnsupportedGraph(f"--features: {name!r} {same}")
        given[field] = name
        fields.append((field, None if field == name else name))
    return fields


def graph_class_labels(data: bytes) -> list[int] | list[str] | None:
    """The class labels an ONNX-ML classifier node of the graph `data` carries, in score-column order.

    None when no node carries them, when nodes disagree, or when the `onnx` package (the
    training environment's, not the server's) is not installed: ONNX Runtime does not
    show node attributes.
    """
    try:
        import onnx
    except ImportError:  # pragma: no cover - the development environment has it
        return None
    graph = onnx.load_model_from_string(data).graph
    found: set[tuple[int, ...] | tuple[str, ...]] = set()
    for node in graph.node:
        if node.domain != "ai.onnx.ml":
            continue
        for attribute in node.attribute:
            if attribute.name not in _LABEL_ATTRIBUTES:
                continue
            if attribute.strings:
                found.add(tuple(label.decode("utf-8") for label in attribute.strings))
            elif attribute.ints:
                found.add(tuple(int(label) for label in attribute.ints))
    if len(found) != 1:
        return None
    return list(found.pop())  # type: ignore[return-value]


@dataclass(frozen=True)
class ClassPlan:
    """How a classifier's outputs become class names in the result."""

    names: tuple[str, ...]  # the classes, in the order of the score columns
    scores: str  # the output [N, k]: an object keyed by class name in the result
    label: str  # the result field holding the predicted class's name
    label_from_graph: bool  # True: the graph's label output, mapped; False: added, the highest score
    graph_labels: tuple[int | str, ...]  # the label output's value for each class, in `names` order

    def output_schemas(self, outputs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """The result's properties: `outputs` with the scores keyed by class and the label a class name."""
        score = {"type": "number"}
        schemas = dict(outputs)
        schemas[self.scores] = {
            "type": "object",
            "description": "The score (a probability, for most converters) of each class.",
            "properties": dict.fromkeys(self.names, score),
            "required": list(self.names),
            "additionalProperties": False,
        }
        schemas[self.label] = {"enum": list(self.names), "description": "The predicted class."}
        return schemas


def plan_classes(
    outputs: Sequence[TensorSpec], names: Sequence[str] | None, graph_labels: list[int] | list[str] | None
) -> ClassPlan | None:
    """Class names for a classifier's outputs: `names` (`--classes`), else string labels the graph carries.

    None without either. `UnsupportedGraph` when `names` are given but the graph has no
    single float output [N, k] of scores, or k differs from the number of names.
    """
    given = names is not None
    if names is None:
        if not graph_labels or not all(isinstance(label, str) for label in graph_labels):
            return None
        names = [str(label) for label in graph_labels]
    found = "; ".join(spec.describe() for spec in outputs)
    scores = [spec for spec in outputs if _is_scores(spec)]
    if len(scores) > 1:
        scores = [spec for spec in scores if spec.name in _SCORE_NAMES][:1]
    if len(scores) != 1:
        if not given:
            return None
        raise UnsupportedGraph(
            f"--classes needs one output [N, k] of float scores (one per class); the graph has {found}"
        )
    spec = scores[0]
    assert spec.shape is not None  # _is_scores checked it
    if spec.shape[1] != len(names):
        if not given:
            return None
        raise UnsupportedGraph(
            f"--classes names {len(names)} classes; the graph's output {spec.describe()} scores {spec.shape[1]}"
        )
    if any(not name for name in names) or len(set(names)) != len(names):
        raise UnsupportedGraph(f"--classes must be distinct, non-empty names; got {list(names)}")
    labels = [candidate for candidate in outputs if _is_label(candidate)]
    if len(labels) > 1:
        labels = [candidate for candidate in labels if candidate.name == "label"]
    known = graph_labels if graph_labels and len(graph_labels) == len(names) else None
    if len(labels) == 1:
        label = labels[0]
        if label.element_type == "string" and (known is None or not isinstance(known[0], str)):
            raise UnsupportedGraph(
                f"--classes: the graph's label output {label.describe()} holds strings, and its class labels "
                "could not be read (install the onnx package, or convert with integer classes)"
            )
        values: tuple[int | str, ...] = tuple(known) if known is not None else tuple(range(len(names)))
        return ClassPlan(tuple(names), spec.name, label.name, True, values)
    added = "label" if all(output.name != "label" for output in outputs) else "predicted_class"
    return ClassPlan(tuple(names), spec.name, added, False, tuple(range(len(names))))


def _is_scores(spec: TensorSpec) -> bool:
    shape = spec.shape
    if not spec.is_tensor or spec.element_type not in _FLOATS or shape is None:
        return False
    return len(shape) == 2 and isinstance(shape[1], int)


def _is_label(spec: TensorSpec) -> bool:
    if not spec.is_tensor or spec.shape is None or len(spec.shape) != 1:
        return False
    integer = spec.dtype is not None and spec.dtype.kind in "iu"
    return integer or spec.element_type == "string"


def parse_examples(
    texts: Sequence[str], input_schema: dict[str, Any], features: Sequence[tuple[str, str | None]] | None
) -> list[dict[str, Any]]:
    """Each `--example` (a JSON object, or with `--features` an array of the row's values) as a request.

    With `--features`, an object's keys may be the names given or the field names. Every
    example must be valid against `input_schema`; `UnsupportedGraph` says which is not and why.
    """
    from jsonschema import Draft202012Validator

    properties = list(input_schema["properties"])
    validator = Draft202012Validator(input_schema)
    examples: list[dict[str, Any]] = []
    for number, text in enumerate(texts, start=1):
        where = f"--example {number}" if len(texts) > 1 else "--example"
        try:
            row = json.loads(text, parse_constant=_not_a_number)
        except json.JSONDecodeError as exc:
            raise UnsupportedGraph(f"{where} is not JSON: {exc}") from None
        except ValueError as exc:
            raise UnsupportedGraph(f"{where}: {exc}") from None
        if isinstance(row, list):
            if features is not None:
                if len(row) != len(properties):
                    raise UnsupportedGraph(f"{where} has {len(row)} values; the model takes {len(properties)} features")
                row = dict(zip(properties, row, strict=True))
            elif len(properties) == 1:
                row = {properties[0]: row}
            else:
                raise UnsupportedGraph(f"{where}: give an object with the fields {properties}")
        elif isinstance(row, dict) and features is not None:
            fields = {title: field for field, title in features if title is not None}
            row = {fields.get(key, key): value for key, value in row.items()}
        if not isinstance(row, dict):
            raise UnsupportedGraph(f"{where} must be a JSON object (or an array of the row's values)")
        # In the schema's order, as the form shows the fields; unknown keys last, for the error.
        row = {**{key: row[key] for key in properties if key in row}, **row}
        error = next(iter(sorted(validator.iter_errors(row), key=lambda e: list(e.absolute_path))), None)
        if error is not None:
            path = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
            raise UnsupportedGraph(f"{where} does not fit the input schema at {path}: {error.message}")
        examples.append(row)
    return examples


def _not_a_number(constant: str) -> Any:
    """Python's json reads NaN and Infinity, which JSON (and a request) cannot carry: refuse them."""
    raise ValueError(f"{constant} is not a JSON number")
