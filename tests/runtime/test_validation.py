"""Schema validation: jsonschema-rs answers first where it agrees with jsonschema, which has the last word."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from serving.runtime.handlers import discover_handlers
from serving.runtime.validation import SchemaValidator, uses_agreed_keywords_only
from tests.servers import PROJECT_ROOT

SPECS = {spec.name: spec for spec in discover_handlers(PROJECT_ROOT / "handlers")}
SCHEMAS = {
    f"{name} {side}": schema
    for name, spec in SPECS.items()
    for side, schema in (("input", spec.input_schema), ("output", spec.output_schema))
    if schema is not None
}


@pytest.mark.parametrize(
    ("schema", "agreed"),
    [
        ({"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}, True),
        ({"type": "array", "items": {"type": "number", "minimum": 0, "maximum": 1}, "maxItems": 3}, True),
        (True, True),
        ({"properties": {"pattern": {"type": "string"}}}, True),  # a property named "pattern" is no keyword
        ({"properties": {"text": {"type": "string", "pattern": "x"}}}, False),  # regex dialects differ
        ({"type": "string", "format": "email"}, False),  # formats are asserted by jsonschema only
        ({"enum": [1, 2]}, False),  # 1 == 1.0 == True questions
        ({"enum": ["setosa", "virginica"]}, True),  # strings equal only equal strings
        ({"const": "a"}, True),
        ({"const": 1}, False),
        ({"anyOf": [{"type": "integer"}, {"$ref": "#/$defs/x"}], "$defs": {"x": {}}}, False),
        ({"type": "array", "uniqueItems": True}, False),
        ({"type": "number", "multipleOf": 0.1}, False),  # float remainders
    ],
)
def test_only_schemas_of_agreed_keywords_take_the_compiled_check(schema: Any, agreed: bool) -> None:
    assert uses_agreed_keywords_only(schema) is agreed
    if isinstance(schema, Mapping):
        assert (SchemaValidator(schema).fast is not None) is agreed


def test_the_example_models_take_the_compiled_check_where_expected() -> None:
    fast = {name for name, schema in SCHEMAS.items() if SchemaValidator(schema).fast is not None}

    assert {"XXXModel input", "Digits input", "Digits output"} <= fast
    assert "SentenceEmbedding input" not in fast  # it has a `pattern`


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"digit": 10, "probabilities": [0.1] * 10}, "10 is greater than the maximum of 9"),
        ({"digit": 3, "probabilities": [0.1] * 9}, "is too short"),
        ({"digit": 3, "probabilities": [0.1] * 9 + [1.5]}, "1.5 is greater than the maximum of 1"),
        ({"digit": True, "probabilities": [0.1] * 10}, "True is not of type 'integer'"),
        ({"digit": 3.0, "probabilities": [0.1] * 10}, None),  # 3.0 is an integer in JSON Schema
        ({"digit": 2**70, "probabilities": [0.1] * 10}, "is greater than the maximum of 9"),  # beyond 64 bits
        ({"digit": 3, "probabilities": [0.1] * 10, "extra": 1}, "Additional properties are not allowed"),
    ],
)
def test_verdicts_and_messages_are_jsonschemas(document: Any, message: str | None) -> None:
    validator = SchemaValidator(SPECS["Digits"].output_schema or {})
    assert validator.fast is not None

    found = validator.first_error(document)

    if message is None:
        assert found is None
    else:
        assert found is not None
        assert message in found[0]


def _documents(schema: Mapping[str, Any]) -> st.SearchStrategy[Any]:
    """JSON values shaped like `schema`'s documents: its property names, numbers near bounds."""
    names = sorted(_property_names(schema)) or ["x"]
    leaves = (
        st.none()
        | st.booleans()
        | st.integers(min_value=-(2**70), max_value=2**70)
        | st.integers(min_value=-3, max_value=12)
        | st.floats(min_value=-2, max_value=12, allow_nan=False)
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=8)
    )
    return st.recursive(
        leaves,
        lambda children: (
            st.lists(children, max_size=12)
            | st.dictionaries(st.sampled_from(names) | st.text(max_size=3), children, max_size=4)
        ),
        max_leaves=40,
    )


def _property_names(schema: Any) -> set[str]:
    if isinstance(schema, Mapping):
        names = set(schema.get("properties", {})) if isinstance(schema.get("properties"), Mapping) else set()
        for value in schema.values():
            names |= _property_names(value)
        return names
    if isinstance(schema, list):
        return set().union(*(_property_names(item) for item in schema)) if schema else set()
    return set()


@pytest.mark.parametrize("name", [name for name, schema in SCHEMAS.items() if uses_agreed_keywords_only(schema)])
# Hypothesis warns when the global `random` advances during a draw, from any thread; these
# strategies never use it, but a library's thread left by an earlier test in this process
# may (retry jitter), which made the test "flaky" with nothing wrong in the check it tests.
@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_the_compiled_check_never_accepts_what_jsonschema_rejects(name: str, data: st.DataObject) -> None:
    schema = SCHEMAS[name]
    document = data.draw(_documents(schema))
    fast = SchemaValidator(schema).fast
    try:
        accepted = fast.is_valid(document)
    except Exception:  # it refuses some values (huge integers): jsonschema then decides
        return
    assert accepted == Draft202012Validator(schema).is_valid(document), document
