"""The application factory: `create_app(settings=None)` builds the whole HTTP API.

It reads as the server's table of contents: the settings and logs, the Flask app, the
models and how they run, the jobs, the request pipeline and error rendering, the wire
protocols and the other routes, and the platform in front.
"""

from __future__ import annotations

from flask import Flask

from serving.cli.command_logs import command_log_level, loading_for_a_command
from serving.cli.new_model import new_model_command
from serving.cli.score import score_command
from serving.config.security import check_key_scopes
from serving.config.settings import Settings
from serving.http import docs, health, web
from serving.http.application import ServingFlask
from serving.http.body_deadline import BodyReadDeadline
from serving.http.error_handlers import register_error_handlers
from serving.http.json_provider import FastJSONProvider
from serving.http.model_route import model_name_converter
from serving.http.model_version import report_model_versions
from serving.http.pipeline import install_pipeline, request_steps
from serving.http.scope import RequestScopes
from serving.http.state import EXTENSION_KEY, ServingState
from serving.jobs import routes as job_routes
from serving.jobs.service import init_jobs
from serving.observability.logs import configure_logging
from serving.observability.metrics import add_metrics_route, create_metrics
from serving.observability.prediction_log import create_prediction_log
from serving.openapi import document as openapi
from serving.platform.detect import adapt_to_platform, log_format, project_id
from serving.protocols import PROTOCOLS, reserved_names
from serving.protocols.bigquery import bigquery_sql_command
from serving.runtime.artifact_sources import artifact_cache, artifact_sources
from serving.runtime.handlers import discover_handlers
from serving.runtime.inference import create_inference
from serving.runtime.onnx import configure_onnx_runtime, options_from_settings
from serving.runtime.registry import Registry
from serving.security.access import init_access_control, load_key_ring
from serving.security.hardening import refuse_debug_in_production


def create_app(settings: Settings | None = None) -> Flask:
    """A Flask app serving every handler in `settings.handlers_dir`.

    `settings` defaults to `Settings.from_env()`. A broken handler module raises
    `HandlerError` here, naming the file, so a bad deployment never starts serving.
    """
    settings = settings or Settings.from_env()
    # A `flask --app main <command>` prints only the command's output and errors.
    configure_logging(command_log_level(settings.log_level), log_format(settings), project_id(settings))
    # Model names the protocols' own URLs take: no handler may be called so.
    reserved = reserved_names()
    app = _flask_app(settings, reserved)

    # The models, where their files come from, and what runs them (serving/runtime/): one
    # state per app. ONNX Runtime's threads are set before any handler's setup() makes a session.
    configure_onnx_runtime(options_from_settings(settings))
    specs = discover_handlers(settings.handlers_dir, reserved_names=reserved)
    registry = Registry(specs, artifact_sources(settings, specs), artifact_cache(settings))
    metrics = create_metrics(settings.metrics, settings.metrics_dir, settings.metrics_write_s)
    report_model_versions(registry, metrics)
    inference = create_inference(settings, metrics)

    # Asynchronous jobs, run by the same inference (serving/jobs/); `POST /v1/<Name>` hands
    # them over through the state.
    jobs = init_jobs(app, settings, registry, inference, metrics)

    state = ServingState(
        settings=settings,
        registry=registry,
        inference=inference,
        metrics=metrics,
        prediction_log=create_prediction_log(
            settings.prediction_log, settings.prediction_log_sample_rate, settings.prediction_log_input
        ),
        schedule_job=job_routes.submit,
        jobs_enabled=jobs is not None,
    )
    app.extensions[EXTENSION_KEY] = state

    # Who may call (serving/security/access.py).
    ring = load_key_ring(settings)
    check_key_scopes(ring, (runtime.spec.name for runtime in registry))
    init_access_control(app, ring)

    # Every request's way through the server, in order (serving/http/pipeline.py), and
    # every error rendered as JSON, in the shape of the protocol whose route was called.
    install_pipeline(app, request_steps(state, ring, exposed_headers=_exposed_headers()))
    register_error_handlers(app, {protocol.blueprint.name: protocol.error_body for protocol in PROTOCOLS})

    # The wire protocols (serving/protocols/), then the server's own routes.
    for protocol in PROTOCOLS:
        app.register_blueprint(protocol.blueprint)
    add_metrics_route(app, metrics)
    app.register_blueprint(health.blueprint)
    app.register_blueprint(openapi.blueprint)
    app.register_blueprint(docs.blueprint)
    app.cli.add_command(new_model_command)
    app.cli.add_command(score_command)
    app.cli.add_command(bigquery_sql_command)
    app.register_blueprint(web.blueprint)
    app.register_blueprint(job_routes.blueprint)
    app.register_blueprint(job_routes.internal)

    # The platform in front: proxies to trust, and what was detected.
    adapt_to_platform(app, settings)
    # Around every request, outside the pipeline's hooks: a body that stops arriving is a
    # 408 and frees its thread (serving/http/body_deadline.py), and the request's scope
    # (time budget, pixel allowance, client gone) is current (serving/http/scope.py).
    app.wsgi_app = RequestScopes(app.wsgi_app, settings.max_pixels_per_request)  # type: ignore[method-assign]
    app.wsgi_app = BodyReadDeadline(app.wsgi_app, settings.body_read_timeout_s)  # type: ignore[method-assign]

    # Eager loading: models whose files are here load now (in gunicorn's master, so the
    # workers share them); models that wait for Cloud Storage load in the background of
    # each serving process, so the server listens within seconds whatever the store does
    # (a gunicorn worker starts them in `post_worker_init`, any other server at its first
    # request: the "remote-models" step). Not for a `flask` command, which never uses them.
    if settings.model_loading == "eager" and not loading_for_a_command():
        registry.load_all(except_remote=True)
    return app


def _exposed_headers() -> tuple[str, ...]:
    """Response headers the protocols' clients read, which browsers may then read too."""
    return tuple(header for protocol in PROTOCOLS for header in protocol.exposed_headers)


def _flask_app(settings: Settings, reserved_names: frozenset[str]) -> Flask:
    """A bare Flask app with this API's HTTP conventions (and none of Flask's per-request work it never needs)."""
    app = ServingFlask(__name__, static_folder=None)
    refuse_debug_in_production(app, settings)
    # No trailing-slash redirects: a redirect would answer an API client with HTML.
    app.url_map.strict_slashes = False
    # Nor for `//` in a path, which Werkzeug would merge with an HTML 308 redirect.
    app.url_map.merge_slashes = False
    app.url_map.converters["model"] = model_name_converter(reserved_names)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes
    app.json = FastJSONProvider(app)
    return app
