"""`flask bigquery-sql`: the CREATE FUNCTION statements and their parameters, from the schema."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask

from serving.protocols.bigquery.sql import FunctionTarget, function_name, positional_parameters, remote_function_sql
from serving.runtime.positional import PositionalOrder
from tests.conftest import FIXTURE_HANDLERS

ARGS = [
    "--endpoint",
    "https://scoring-abc-uc.a.run.app",
    "--connection",
    "proj.us.bq-conn",
    "--dataset",
    "proj.scoring",
]


def _run(app: Flask, *args: str) -> Any:
    return app.test_cli_runner().invoke(args=["bigquery-sql", *args])


def test_the_statement_for_iris(app: Flask) -> None:
    result = _run(app, "Iris", *ARGS, "--output", "label")

    assert result.exit_code == 0, result.output
    sql = result.output
    assert "CREATE OR REPLACE FUNCTION `proj.scoring`.iris_label(payload JSON) RETURNS STRING\n" in sql
    assert (
        "CREATE OR REPLACE FUNCTION `proj.scoring`.iris_label_args(sepal_length FLOAT64, sepal_width FLOAT64, "
        "petal_length FLOAT64, petal_width FLOAT64) RETURNS STRING\n"
    ) in sql
    assert sql.count("REMOTE WITH CONNECTION `proj.us.bq-conn`") == 2
    assert sql.count('endpoint = "https://scoring-abc-uc.a.run.app/v1/bigquery/Iris"') == 2
    assert sql.count('user_defined_context = [("on_error", "fail"), ("output", "label")]') == 2
    assert "max_batching_rows = 10000" in sql  # Iris has no time budget: the route's ceiling
    assert "TO_JSON(STRUCT(sepal_length, sepal_width, petal_length, petal_width))" in sql


def test_the_parameters_match_every_models_schema(app: Flask) -> None:
    for runtime in app.extensions["serving"].registry:
        schema = runtime.spec.input_schema
        sql = _run(app, runtime.spec.name, *ARGS).output
        declared = re.search(rf"{function_name(runtime.spec.name)}_args\((.*)\) RETURNS JSON", sql)
        order = PositionalOrder.of(schema)

        assert order is not None
        assert declared is not None, sql
        assert [p.split()[0] for p in declared.group(1).split(", ")] == list(order.names)


@pytest.mark.parametrize(
    ("prop", "sql_type"),
    [
        pytest.param({"type": "integer"}, "INT64", id="integer"),
        pytest.param({"type": "number"}, "FLOAT64", id="number"),
        pytest.param({"type": "boolean"}, "BOOL", id="boolean"),
        pytest.param({"type": "string"}, "STRING", id="string"),
        pytest.param({"type": "string", "contentEncoding": "base64"}, "BYTES", id="base64"),
        pytest.param({"type": ["integer", "null"]}, "INT64", id="nullable"),
        pytest.param({"type": "object"}, "JSON", id="object"),
        pytest.param({}, "JSON", id="anything"),
    ],
)
def test_sql_types_follow_the_schema(prop: dict[str, Any], sql_type: str) -> None:
    assert positional_parameters({"type": "object", "properties": {"v": prop}}) == [("v", sql_type)]


def test_a_schema_without_order_gets_only_the_json_function(make_app: Any) -> None:
    app = make_app(handlers_dir=FIXTURE_HANDLERS / "bigquery")
    sql = _run(app, "Nested", *ARGS).output

    assert "nested(payload JSON)" in sql
    assert "_args(" not in sql


def test_odd_property_names_are_quoted() -> None:
    target = FunctionTarget("https://s.example", "p.us.c", "p.d", 10)
    sql = remote_function_sql("M", {"type": "object", "properties": {"petal width": {"type": "number"}}}, None, target)

    assert "m_args(`petal width` FLOAT64)" in sql


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param(["Nope", *ARGS], "no model 'Nope'", id="model"),
        pytest.param(["Iris", *ARGS, "--output", "colour"], "no field 'colour'", id="output"),
        pytest.param(["Iris", *ARGS[:1], "http://plain.example", *ARGS[2:]], "https://", id="endpoint"),
        pytest.param(["Iris", *ARGS[:3], "proj.bq-conn", *ARGS[4:]], "PROJECT.LOCATION.CONNECTION", id="connection"),
    ],
)
def test_bad_options_are_refused_naming_them(app: Flask, args: list[str], expected: str) -> None:
    result = _run(app, *args)

    assert result.exit_code != 0
    assert expected in result.output
