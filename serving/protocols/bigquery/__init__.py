"""BigQuery remote functions: `POST /v1/bigquery/<Model>` scores table rows from SQL.

The protocol as one unit: its route and error shape (routes.py), its wire format
(wire.py, encoding.py), who may call it (callers.py), its OpenAPI description
(openapi.py) and the SQL that declares it in BigQuery (sql.py, `flask bigquery-sql`).
"""

from __future__ import annotations

from serving.protocols.bigquery.command import bigquery_sql_command
from serving.protocols.bigquery.openapi import bigquery_routes
from serving.protocols.bigquery.routes import blueprint, error_body

RESERVED_NAMES = frozenset({"bigquery"})

__all__ = ["RESERVED_NAMES", "bigquery_routes", "bigquery_sql_command", "blueprint", "error_body"]
