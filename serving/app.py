"""The application factory: `create_app(settings=None)` builds the whole HTTP API."""

from __future__ import annotations

from flask import Flask
from flask_cors import CORS

from serving.cli.new_model import new_model_command
from serving.config.settings import Settings, SettingsError
from serving.errors import register_error_handlers
from serving.http import batch as batch_api
from serving.http import docs, health, web
from serving.http import predict as api
from serving.http.json_provider import FastJSONProvider
from serving.http.state import EXTENSION_KEY, ServingState
from serving.http.vertex import register_vertex_routes
from serving.jobs import routes as job_routes
from serving.jobs.service import init_jobs
from serving.observability.logs import REQUEST_ID_HEADER, configure_logging, install_request_hooks
from serving.observability.metrics import create_metrics, install_metrics
from serving.openapi import document as openapi
from serving.platform.detect import adapt_to_platform, log_format, project_id
from serving.runtime.batching import create_inference, install_batching_hooks
from serving.runtime.onnx import configure_onnx_runtime, options_from_settings
from serving.runtime.registry import Registry, discover_handlers
from serving.security.access import enforce_access_control, install_access_control, load_key_ring
from serving.security.hardening import install_security_headers, refuse_debug_in_production
from serving.security.ratelimits import install_rate_limits


def create_app(settings: Settings | None = None) -> Flask:
    """A Flask app serving every handler in `settings.handlers_dir`.

    `settings` defaults to `Settings.from_env()`. A broken handler module raises
    `HandlerError` here, naming the file, so a bad deployment never starts serving.
    """
    settings = settings or Settings.from_env()
    configure_logging(settings.log_level, log_format(settings), project_id(settings))

    app = Flask(__name__, static_folder=None)
    refuse_debug_in_production(app, settings)
    # No trailing-slash redirects: a redirect would answer an API client with HTML.
    app.url_map.strict_slashes = False
    # Nor for `//` in a path, which Werkzeug would merge with an HTML 308 redirect.
    app.url_map.merge_slashes = False
    app.url_map.converters["model"] = api.ModelNameConverter
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes
    app.json = FastJSONProvider(app)
    # Before any handler's setup(): the sessions ONNX models create take their threads from it.
    configure_onnx_runtime(options_from_settings(settings))

    registry = Registry(discover_handlers(settings.handlers_dir))
    metrics = create_metrics(settings.metrics, settings.metrics_dir)
    app.extensions[EXTENSION_KEY] = ServingState(
        settings=settings,
        registry=registry,
        inference=create_inference(settings, metrics),
        metrics=metrics,
    )

    install_request_hooks(app)
    install_metrics(app, metrics)
    # Order matters: identify the API key, count the request against its client's rate
    # limit (so failed key guesses are limited too), then refuse it if it has no key.
    ring = load_key_ring(settings)
    for key_id, model in ring.unknown_models(runtime.spec.name for runtime in registry):
        raise SettingsError(f"API_KEYS: key {key_id!r} is scoped to {model!r}, which is not a served model")
    install_access_control(app, ring)
    install_rate_limits(
        app,
        limits=settings.rate_limits,
        storage_url=settings.rate_limit_storage_url,
        key_prefix=settings.rate_limit_key_prefix,
    )
    enforce_access_control(app)
    install_security_headers(app)
    install_batching_hooks(app)
    batch_api.install_error_alias(app)
    register_error_handlers(app)
    any_origin = settings.cors_origins == ("*",)
    CORS(
        app,
        origins="*" if any_origin else list(settings.cors_origins),
        # A public API answers `*` rather than echoing each origin: no credentials are
        # ever allowed, and shared caches can keep one copy of each response.
        send_wildcard=any_origin,
        supports_credentials=False,
        methods=["GET", "POST", "DELETE", "OPTIONS"],
        expose_headers=[REQUEST_ID_HEADER, "Location", "Retry-After"],
        max_age=3600,
    )
    app.register_blueprint(health.blueprint)
    app.register_blueprint(api.blueprint)
    app.register_blueprint(batch_api.blueprint)
    app.register_blueprint(openapi.blueprint)
    app.register_blueprint(docs.blueprint)
    register_vertex_routes(app)
    app.cli.add_command(new_model_command)
    app.register_blueprint(web.blueprint)
    app.register_blueprint(job_routes.blueprint)
    app.register_blueprint(job_routes.internal)
    init_jobs(app, settings, registry, app.extensions[EXTENSION_KEY].inference)

    adapt_to_platform(app, settings)

    if settings.model_loading == "eager":
        registry.load_all()
    return app
