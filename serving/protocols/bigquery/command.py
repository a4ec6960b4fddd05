"""`flask --app main bigquery-sql <Model> ...`: print the SQL that declares a model in BigQuery."""

from __future__ import annotations

import re

import click
from flask import current_app
from flask.cli import with_appcontext

from serving.http.state import get_state
from serving.protocols.bigquery.routes import max_rows
from serving.protocols.bigquery.sql import FunctionTarget, remote_function_sql

_CONNECTION = re.compile(r"[a-z0-9-]+\.[a-z0-9-]+\.[A-Za-z0-9_-]+")
_DATASET = re.compile(r"[a-z0-9-]+\.[A-Za-z0-9_]+")


@click.command("bigquery-sql")
@click.argument("model")
@click.option("--endpoint", required=True, help="The service's base URL, e.g. https://scoring-abc-uc.a.run.app")
@click.option("--connection", required=True, help="The BigQuery connection: PROJECT.LOCATION.CONNECTION")
@click.option("--dataset", required=True, help="Where the functions go: PROJECT.DATASET")
@click.option("--output", default=None, help="Return only this field of the result (e.g. label).")
@click.option("--on-error", type=click.Choice(["fail", "null"]), default="fail", show_default=True)
@with_appcontext
def bigquery_sql_command(
    model: str, endpoint: str, connection: str, dataset: str, output: str | None, on_error: str
) -> None:
    """Print CREATE FUNCTION ... REMOTE statements for MODEL and an example SELECT."""
    state = get_state(current_app)
    runtime = state.registry.get(model)
    if runtime is None:
        served = ", ".join(r.spec.name for r in state.registry) or "none"
        raise click.BadParameter(f"no model {model!r} is served here (served: {served})", param_hint="MODEL")
    if not re.fullmatch(r"https://[^/\s?#]+(/[^\s?#]*)?", endpoint):
        raise click.BadParameter("expected the service's https:// URL", param_hint="--endpoint")
    if not _CONNECTION.fullmatch(connection):
        raise click.BadParameter("expected PROJECT.LOCATION.CONNECTION", param_hint="--connection")
    if not _DATASET.fullmatch(dataset):
        raise click.BadParameter("expected PROJECT.DATASET", param_hint="--dataset")
    target = FunctionTarget(
        endpoint=endpoint,
        connection=connection,
        dataset=dataset,
        max_batching_rows=max_rows(state.settings, runtime, state.inference.budget.default_timeout_s),
        on_error=on_error,
        output=output,
    )
    try:
        script = remote_function_sql(runtime.spec.name, runtime.spec.input_schema, runtime.spec.output_schema, target)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--output") from None
    click.echo(script, nl=False)
