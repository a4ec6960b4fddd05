"""Positional rows (BigQuery scalar arguments, Vertex AI `instanceType: "array"`) and BigQuery's encodings."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from serving.errors import ValidationFailed
from serving.protocols.bigquery.encoding import coerce
from serving.runtime.positional import PositionalOrder
from tests.conftest import FIXTURE_HANDLERS

IRIS_ROW = [5.1, 3.5, 1.4, 0.2]
IRIS = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}


@pytest.mark.parametrize(
    ("schema", "names"),
    [
        pytest.param({"type": "object", "properties": {"b": {}, "a": {}}}, ("b", "a"), id="declared-order"),
        pytest.param({"type": "array"}, None, id="not-an-object"),
        pytest.param({"type": "object"}, None, id="no-properties"),
        pytest.param({"type": "object", "properties": {"a": {}}, "oneOf": [{}, {}]}, None, id="combinator"),
    ],
)
def test_only_a_flat_object_schema_has_an_order(schema: dict[str, Any], names: tuple[str, ...] | None) -> None:
    order = PositionalOrder.of(schema)

    assert (order.names if order else None) == names


def test_values_map_in_order_and_nulls_are_absent() -> None:
    order = PositionalOrder(("a", "b", "c"))

    assert order.payload([1, None, "x"], where="$") == {"a": 1, "c": "x"}
    with pytest.raises(ValidationFailed, match="2 values given, but the model takes 3, in this order: a, b, c"):
        order.payload([1, 2], where="$")


SCHEMA = {
    "type": "object",
    "properties": {
        "n": {"type": "integer"},
        "x": {"type": "number"},
        "maybe": {"type": ["number", "null"]},
        "s": {"type": "string"},
        "any": {},
        "inner": {"type": "object", "properties": {"k": {"type": "integer"}}},
        "list": {"type": "array", "items": {"type": "number"}},
    },
}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param({"n": "9007199254740993"}, {"n": 9007199254740993}, id="int64-beyond-2^53"),
        pytest.param({"n": "3.0"}, {"n": 3}, id="whole-numeric-for-integer"),
        pytest.param({"n": "3.5"}, {"n": "3.5"}, id="fraction-stays-for-the-schema-to-refuse"),
        pytest.param({"x": "123.456789012345678901"}, {"x": 123.45678901234568}, id="bignumeric"),
        pytest.param({"x": "NaN"}, {"x": "NaN"}, id="nan-stays"),
        pytest.param({"x": "-1e3"}, {"x": -1000.0}, id="exponent"),
        pytest.param({"s": "12"}, {"s": "12"}, id="strings-stay-strings"),
        pytest.param(
            {"x": None, "maybe": None, "any": None}, {"maybe": None, "any": None}, id="null-absent-unless-allowed"
        ),
        pytest.param({"inner": {"k": "5"}, "list": ["1.5", 2]}, {"inner": {"k": 5}, "list": [1.5, 2]}, id="nested"),
    ],
)
def test_bigquery_encodings_are_read_back_as_the_schema_says(value: dict[str, Any], expected: dict[str, Any]) -> None:
    assert coerce(value, SCHEMA) == expected


@pytest.mark.parametrize("path", ["/v1/models/Iris:predict", "/vertex/predict"])
def test_vertex_array_instances_map_to_the_schema_order(make_app: Any, path: str) -> None:
    app = make_app(aip_health_route="/vertex/health", aip_predict_route="/vertex/predict", default_model="Iris")
    client: FlaskClient = app.test_client()

    arrays = client.post(path, json={"instances": [IRIS_ROW, [6.7, 3.0, 5.2, 2.3]]})
    objects = client.post(
        path,
        json={"instances": [IRIS, {"sepal_length": 6.7, "sepal_width": 3.0, "petal_length": 5.2, "petal_width": 2.3}]},
    )

    assert arrays.status_code == 200
    assert arrays.json == objects.json


def test_a_wrong_count_names_the_instance_and_the_order(client: FlaskClient) -> None:
    response = client.post("/v1/models/Iris:predict", json={"instances": [IRIS_ROW, [1.0, 2.0]]})

    assert response.status_code == 400
    assert response.json["index"] == 1
    assert response.json["message"].startswith("instances[1]: 2 values given, but the model takes 4")


def test_array_instances_for_a_schema_without_order_are_refused(make_app: Any) -> None:
    client = make_app(handlers_dir=FIXTURE_HANDLERS / "bigquery").test_client()

    response = client.post("/v1/models/Nested:predict", json={"instances": [[1, 2]]})

    assert response.status_code == 400
    assert "takes no positional values" in response.json["message"]
