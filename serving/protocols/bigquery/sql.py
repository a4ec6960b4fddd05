"""The SQL that declares a served model as BigQuery remote functions, and an example query.

`remote_function_sql` writes, for one model, `CREATE OR REPLACE FUNCTION ... REMOTE WITH
CONNECTION ... OPTIONS (endpoint, user_defined_context, max_batching_rows)` in both
argument styles the route takes: one `JSON` parameter (called with
`TO_JSON(STRUCT(col_a, col_b, ...))`), and, when the input schema has a flat property
order, one typed parameter per property in that order. SQL types come from the schema:
number FLOAT64, integer INT64, boolean BOOL, a base64 string BYTES (BigQuery sends BYTES
as base64, which is what such a property takes), another string STRING, anything else JSON.
The function returns JSON, or with `output` the SQL type of that field of OUTPUT_SCHEMA.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from serving.runtime.positional import PositionalOrder

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,299}")
_SQL_TYPES = {"number": "FLOAT64", "integer": "INT64", "boolean": "BOOL", "string": "STRING"}


@dataclass(frozen=True)
class FunctionTarget:
    """Where the functions live and what they call."""

    endpoint: str  # the service's base URL, e.g. https://scoring-abc-uc.a.run.app
    connection: str  # PROJECT.LOCATION.CONNECTION
    dataset: str  # PROJECT.DATASET
    max_batching_rows: int
    on_error: str = "fail"
    output: str | None = None


def function_name(model: str) -> str:
    """`SentenceEmbedding` -> `sentence_embedding`: the SQL name of a model's function."""
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", model)
    return re.sub(r"[^A-Za-z0-9_]", "_", snake).lower()


def quote(name: str) -> str:
    """`name` as a SQL identifier, backquoted when it is not a plain one."""
    return name if _IDENTIFIER.fullmatch(name) else "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def sql_type(schema: Any) -> str:
    """The SQL type of a value matching `schema` (JSON when there is no single scalar type)."""
    if not isinstance(schema, Mapping):
        return "JSON"
    declared = schema.get("type")
    types = [declared] if isinstance(declared, str) else [t for t in declared or [] if t != "null"]
    if not types and isinstance(schema.get("enum"), list):
        values = schema["enum"]
        types = sorted({"string" if isinstance(v, str) else "number" for v in values})
    if len(types) != 1:
        return "JSON"
    if types[0] == "string" and schema.get("contentEncoding") == "base64":
        return "BYTES"
    return _SQL_TYPES.get(types[0], "JSON")


def positional_parameters(input_schema: Mapping[str, Any]) -> list[tuple[str, str]] | None:
    """`(name, SQL type)` per input property in declared order, or None without a flat order."""
    order = PositionalOrder.of(input_schema)
    if order is None:
        return None
    properties = input_schema["properties"]
    return [(name, sql_type(properties[name])) for name in order.names]


def return_type(output_schema: Mapping[str, Any] | None, output: str | None) -> str:
    """RETURNS type: JSON for the whole result, else the SQL type of field `output`."""
    if output is None:
        return "JSON"
    properties = (output_schema or {}).get("properties")
    if not isinstance(properties, Mapping) or output not in properties:
        raise ValueError(f"the result has no field {output!r} (OUTPUT_SCHEMA declares: {_fields(output_schema)})")
    return sql_type(properties[output])


def _fields(schema: Mapping[str, Any] | None) -> str:
    properties = (schema or {}).get("properties")
    return ", ".join(properties) if isinstance(properties, Mapping) and properties else "no fields"


def _string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _options(model: str, target: FunctionTarget) -> str:
    context = [("on_error", target.on_error)]
    if target.output is not None:
        context.append(("output", target.output))
    pairs = ", ".join(f"({_string(key)}, {_string(value)})" for key, value in context)
    endpoint = target.endpoint.rstrip("/") + f"/v1/bigquery/{model}"
    return (
        f"OPTIONS (\n  endpoint = {_string(endpoint)},\n  user_defined_context = [{pairs}],\n"
        f"  max_batching_rows = {target.max_batching_rows}\n)"
    )


def remote_function_sql(
    model: str, input_schema: Mapping[str, Any], output_schema: Mapping[str, Any] | None, target: FunctionTarget
) -> str:
    """The CREATE FUNCTION statements (both argument styles) and an example SELECT, as one script."""
    name = function_name(model) + (f"_{function_name(target.output)}" if target.output else "")
    returns = return_type(output_schema, target.output)
    dataset = "`" + target.dataset + "`"
    connection = "`" + target.connection + "`"
    options = _options(model, target)
    parts = [
        f"-- {model} as BigQuery remote functions; endpoint {target.endpoint}",
        f"-- Call with one JSON argument: {name}(TO_JSON(STRUCT(col_a, col_b, ...))).",
        f"CREATE OR REPLACE FUNCTION {dataset}.{name}(payload JSON) RETURNS {returns}\n"
        f"REMOTE WITH CONNECTION {connection}\n{options};",
    ]
    parameters = positional_parameters(input_schema)
    columns = list(input_schema.get("properties", {})) if isinstance(input_schema.get("properties"), Mapping) else []
    if parameters is not None:
        declared = ", ".join(f"{quote(param)} {kind}" for param, kind in parameters)
        order = ", ".join(param for param, _ in parameters)
        parts.append(
            f"-- Or with one typed argument per input, in this order: {name}_args({order}).\n"
            f"CREATE OR REPLACE FUNCTION {dataset}.{name}_args({declared}) RETURNS {returns}\n"
            f"REMOTE WITH CONNECTION {connection}\n{options};"
        )
    struct = ", ".join(quote(column) for column in columns) or "..."
    parts.append(
        "-- Score a table (rename the columns to match the inputs: "
        f"{', '.join(columns) or 'see the model schema'}).\n"
        f"SELECT t.*, {dataset}.{name}(TO_JSON(STRUCT({struct}))) AS {function_name(model)}\n"
        f"FROM `{target.dataset}.YOUR_TABLE` AS t;"
    )
    return "\n\n".join(parts) + "\n"
