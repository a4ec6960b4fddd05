"""`flask --app main score <Model> --input PATTERN --output PREFIX`: score JSON Lines offline with Beam.

Reads every file matching `--input` (local or `gs://` globs, one payload per line), scores
each with the model's handler under Apache Beam's RunInference (serving/offline/), and
writes `PREFIX-SSSSS-of-NNNNN.jsonl` (`{"key"?, "result", "model_version"}`) and the
dead-letter shards `PREFIX.errors-...jsonl` (`{"line", "error"}`; `--dead-letter` moves
them). `--runner DataflowRunner` runs it on Dataflow; every other `--name=value` is a Beam
pipeline option (`--project`, `--region`, `--temp_location`, `--direct_num_workers`...).
On Dataflow the project travels to the workers as the package `setup.py` builds, unless
`--setup_file` or `--sdk_container_image` says otherwise.

Exit status 0 when the pipeline finished (rows in the dead-letter output included: their
count is printed), 1 for an unknown model, an input that matches no file (or a local
match that is not a readable file, such as a directory, or a compressed one that does not
decompress to its end: serving/offline/inputs.py checks each before the run), `gs://`
paths without Google credentials, or a pipeline that failed, 2 for a bad option.
apache-beam lives in .venv-beam (requirements-beam.txt):
`.venv-beam/bin/flask --app main score Iris --input rows.jsonl --output out/iris`.
"""

from __future__ import annotations

import logging
import os

import click
from flask.cli import with_appcontext

from serving.config.settings import SettingsError
from serving.http.state import get_state
from serving.runtime.handlers import HandlerError

_RUNNERS = ("DirectRunner", "DataflowRunner")


@click.command(
    "score",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    help="Score a model on JSON Lines files with Apache Beam (locally, or on Dataflow). "
    "Extra --name=value options are Beam pipeline options.",
)
@click.argument("model")
@click.option("--input", "input_pattern", required=True, help="JSON Lines files: a path or glob, local or gs://.")
@click.option("--output", required=True, help="Prefix of the result shards (local or gs://).")
@click.option("--dead-letter", default=None, help="Prefix of the dead-letter shards (default: OUTPUT.errors).")
@click.option("--key", default=None, help="A field of each line copied to its result (and left out of the payload).")
@click.option("--runner", type=click.Choice(_RUNNERS), default="DirectRunner", show_default=True)
@click.pass_context
@with_appcontext
def score_command(
    ctx: click.Context,
    model: str,
    input_pattern: str,
    output: str,
    dead_letter: str | None,
    key: str | None,
    runner: str,
) -> None:
    try:
        from apache_beam.io.filesystems import FileSystems

        from serving.offline.inputs import UnreadableInput, check_decompresses, compression_of
        from serving.offline.model_handler import HandlerModelHandler, ModelLoadError, UnknownModel
        from serving.offline.options import BadPipelineOption, pipeline_options, ship_project
        from serving.offline.pipeline import ScoreJob, score
    except ImportError as exc:
        raise click.ClickException(
            f"apache-beam is not installed in this environment ({exc}): use .venv-beam "
            "(make test-beam builds it) or pip install -r requirements-beam.txt"
        ) from None

    try:
        options = pipeline_options([f"--runner={runner}", *ctx.args])
    except BadPipelineOption as exc:
        raise click.UsageError(str(exc), ctx) from None
    if runner != "DirectRunner" and ship_project(options):
        click.echo("shipping the project to the workers with --setup_file setup.py", err=True)

    settings = get_state().settings
    try:
        handler = HandlerModelHandler.for_model(model, settings)
    except (UnknownModel, HandlerError, SettingsError) as exc:
        raise click.ClickException(str(exc)) from None

    remote = next((path for path in (input_pattern, output, dead_letter or "") if path.startswith("gs://")), None)
    if remote is not None and not settings.storage_emulator_host and (missing := _missing_credentials()):
        raise click.ClickException(f"no Google credentials to read or write {remote}: {missing}")

    try:
        matched = FileSystems.match([input_pattern])[0].metadata_list
    except Exception as exc:  # noqa: BLE001 - Beam's filesystems raise BeamIOError and others
        raise click.ClickException(f"cannot read --input {input_pattern}: {exc}") from None
    if not matched:
        raise click.ClickException(f"no file matches --input {input_pattern}")
    local = [m.path for m in matched if FileSystems.get_scheme(m.path) is None]
    unreadable = next((path for path in local if not _readable(path)), None)
    if unreadable is not None:
        # Else Beam starts the pipeline, fails inside it and leaves its temporary directories behind.
        raise click.ClickException(f"cannot read --input {input_pattern}: {unreadable} is not a readable file")
    compressed = [path for path in local if compression_of(path) is not None]
    if compressed:
        click.echo(f"checking that {len(compressed)} compressed file(s) decompress to their end", err=True)
    try:
        for path in compressed:
            check_decompresses(path)
    except UnreadableInput as exc:
        # Else a truncated file scores as far as it decompresses, and the run exits 0 (inputs.py).
        raise click.ClickException(f"cannot read --input {input_pattern}: {exc}") from None

    # Beam logs every step of building the pipeline at INFO; the terminal shows progress instead.
    logging.getLogger("apache_beam").setLevel(logging.WARNING)
    job = ScoreJob(input_pattern, output, dead_letter or f"{output}.errors", key)
    click.echo(f"scoring {model} on {len(matched)} file(s) with the {runner}", err=True)
    try:
        summary = score(handler, job, options, progress=runner == "DirectRunner")
    except ModelLoadError as exc:
        raise click.ClickException(f"model {model} cannot load: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - whatever the runner raises, one line and exit 1
        raise click.ClickException(f"the pipeline failed: {exc.__class__.__name__}: {exc}") from None
    click.echo(
        f"{model}: {summary.scored:,} rows scored, {summary.dead_letters:,} in the dead-letter output "
        f"in {summary.seconds:.1f} s ({summary.state}); results: {job.output}-*.jsonl, "
        f"dead letters: {job.dead_letter}-*.jsonl"
    )


def _missing_credentials() -> str | None:
    """What to do when Google's default credentials cannot be found; None when they can.

    Beam looks them up itself for a `gs://` path, but retries for two minutes, logging
    every failure with its traceback, before the match fails with a timeout.
    """
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    try:
        google.auth.default()
    except DefaultCredentialsError:
        return (
            "run `gcloud auth application-default login`, or set GOOGLE_APPLICATION_CREDENTIALS "
            "to a service account's key file"
        )
    return None


def _readable(path: str) -> bool:
    """Whether the local `path` is a file this process may read (a directory is not)."""
    return os.path.isfile(path) and os.access(path, os.R_OK)
