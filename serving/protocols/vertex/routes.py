"""Vertex AI's custom container contract: its health and predict routes, from its variables.

Vertex AI starts a custom serving container with `AIP_HTTP_PORT`, `AIP_HEALTH_ROUTE` and
`AIP_PREDICT_ROUTE` set (gunicorn.conf.py binds `AIP_HTTP_PORT`). It serves one model per
deployment: `DEFAULT_MODEL`, or the only model in handlers/. The health route answers 200
only when that model is ready (loading it first, if loading is lazy) and 503 otherwise;
the predict route takes `{"instances": [...]}` and answers `{"predictions": [...]}` exactly
like `POST /v1/models/<Name>:predict`.
"""

from __future__ import annotations

from flask import Flask, Response, jsonify

from serving.config.settings import Settings
from serving.http.batch import predict_instances
from serving.http.state import get_state
from serving.observability.logs import tag_model
from serving.runtime.registry import ModelRuntime, Registry
from serving.security.access import public


def default_model(settings: Settings, registry: Registry) -> ModelRuntime | None:
    """The model `DEFAULT_MODEL` names, else the only model served, else None.

    Raises `SettingsError` when `DEFAULT_MODEL` names no served model.
    """
    name = settings.default_model_name([runtime.spec.name for runtime in registry])
    return None if name is None else registry.get(name)


def register_vertex_routes(app: Flask) -> None:
    """Add Vertex AI's health and predict routes when its variables are set.

    Raises `SettingsError` when they are set but no single model is to be served.
    """
    state = get_state(app)
    settings = state.settings
    runtime = default_model(settings, state.registry)
    if settings.aip_health_route is None or settings.aip_predict_route is None:
        return
    if runtime is None:
        settings.refuse_vertex_without_model([r.spec.name for r in state.registry])
    name = runtime.spec.name

    def vertex_health() -> Response:
        tag_model(name)
        # Loads the model on first call when MODEL_LOADING=lazy; a 503 says why it cannot serve.
        get_state().inference.model_for(runtime)
        return jsonify(status="ready", model=name)

    def vertex_predict() -> Response:
        tag_model(name)
        return predict_instances(runtime)

    # Vertex AI checks callers with IAM before it forwards a request, and cannot forward an
    # API key: its two routes are open to whoever reaches the container.
    app.add_url_rule(settings.aip_health_route, "vertex_health", public(vertex_health), methods=["GET"])
    app.add_url_rule(settings.aip_predict_route, "vertex_predict", public(vertex_predict), methods=["POST"])
