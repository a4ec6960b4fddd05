"""How handler schemas map to Open Inference Protocol tensors (serving/protocols/oip/tensors.py)."""

from __future__ import annotations

from typing import Any

import pytest

from serving.protocols.oip.tensors import OutputMismatch, output_values, signature


def _input(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": {"p": schema}}


@pytest.mark.parametrize(
    ("schema", "datatype", "shape"),
    [
        ({"type": "string"}, "BYTES", [-1]),
        ({"type": "string", "contentEncoding": "base64"}, "BYTES", [-1]),
        ({"enum": ["a", "b"]}, "BYTES", [-1]),
        ({"const": "a"}, "BYTES", [-1]),
        ({"type": "integer"}, "INT64", [-1]),
        ({"type": "number", "minimum": 0}, "FP64", [-1]),
        ({"type": "boolean"}, "BOOL", [-1]),
        ({"type": "object"}, "BYTES", [-1]),
        ({"type": "array", "items": {"type": "integer"}, "minItems": 3, "maxItems": 3}, "INT64", [-1, 3]),
        ({"type": "array", "items": {"type": "number"}}, "FP64", [-1, -1]),
    ],
)
def test_input_properties_map_to_tensors(schema: dict[str, Any], datatype: str, shape: list[int]) -> None:
    mapped = signature(_input(schema), None)

    assert mapped.problem is None
    assert [spec.metadata() for spec in mapped.inputs] == [{"name": "p", "datatype": datatype, "shape": shape}]


@pytest.mark.parametrize(
    ("input_schema", "problem"),
    [
        pytest.param(_input({}), "input property 'p' cannot be a tensor", id="no-type"),
        pytest.param(_input({"type": ["string", "null"]}), "input property 'p'", id="type-list"),
        pytest.param(_input({"oneOf": [{"type": "string"}]}), "input property 'p'", id="one-of"),
        pytest.param(_input({"type": "array", "items": {"type": "object"}}), "input property 'p'", id="objects"),
        pytest.param(_input({"enum": ["a", 1]}), "input property 'p'", id="mixed-enum"),
        pytest.param({"type": "string"}, "not an object with `properties`", id="not-object"),
        pytest.param({"type": "object"}, "not an object with `properties`", id="no-properties"),
    ],
)
def test_unmappable_inputs_name_the_property(input_schema: dict[str, Any], problem: str) -> None:
    mapped = signature(input_schema, None)

    assert mapped.problem is not None
    assert problem in mapped.problem
    assert mapped.inputs == ()


@pytest.mark.parametrize(
    ("output_schema", "outputs"),
    [
        pytest.param(None, [("result", "BYTES", [-1])], id="none"),
        pytest.param({"type": "string"}, [("result", "BYTES", [-1])], id="string"),
        pytest.param({"type": "integer"}, [("result", "INT64", [-1])], id="integer"),
        pytest.param({"type": "object"}, [("result", "BYTES", [-1])], id="object-without-properties"),
        pytest.param(
            {"type": "object", "properties": {"a": {}, "b": {"type": "array", "items": {"type": "number"}}}},
            [("a", "BYTES", [-1]), ("b", "BYTES", [-1])],
            id="untyped-and-varying-are-json",
        ),
    ],
)
def test_outputs_map_to_tensors(output_schema: dict[str, Any] | None, outputs: list[tuple[Any, ...]]) -> None:
    mapped = signature(_input({"type": "string"}), output_schema)

    assert [(spec.name, spec.datatype, spec.shape) for spec in mapped.outputs] == outputs
    assert mapped.result_only == (outputs[0][0] == "result")


def test_results_that_break_their_tensor_are_a_mismatch() -> None:
    mapped = signature(_input({"type": "string"}), {"type": "object", "properties": {"n": {"type": "integer"}}})
    (spec,) = mapped.outputs

    assert output_values(spec, [{"n": 1}, {"n": 2}], result_only=False) == ([2], [1, 2])
    with pytest.raises(OutputMismatch, match="row 1 has no 'n'"):
        output_values(spec, [{"n": 1}, {}], result_only=False)
    with pytest.raises(OutputMismatch, match="holds a str where integer values belong"):
        output_values(spec, [{"n": "1"}], result_only=False)
    with pytest.raises(OutputMismatch, match="which INT64 cannot"):
        output_values(spec, [{"n": 2**63}], result_only=False)
