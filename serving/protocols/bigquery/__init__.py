"""BigQuery remote functions: `POST /v1/bigquery/<Model>` scores table rows from SQL.

The protocol as one unit: its route and error shape (routes.py), its wire format
(wire.py, encoding.py), who may call it (callers.py), its OpenAPI description
(openapi.py) and the SQL that declares it in BigQuery (sql.py, `flask bigquery-sql`,
which the app factory registers beside its other commands).
"""

from __future__ import annotations

from serving.protocols.bigquery.command import bigquery_sql_command
from serving.protocols.bigquery.openapi import bigquery_routes
from serving.protocols.bigquery.routes import blueprint, error_body
from serving.protocols.spec import WireProtocol

# `/v1/bigquery/<Model>` would shadow a model called bigquery.
PROTOCOL = WireProtocol("bigquery", blueprint, bigquery_routes, frozenset({"bigquery"}), error_body)

__all__ = ["PROTOCOL", "bigquery_sql_command"]
