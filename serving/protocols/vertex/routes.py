"""Vertex AI's custom container contract: its health and predict routes, from its variables.

Vertex AI starts a custom serving container with `AIP_HTTP_PORT`, `AIP_HEALTH_ROUTE` and
`AIP_PREDICT_ROUTE` set (gunicorn.conf.py binds `AIP_HTTP_PORT`). It serves one model per
deployment: `DEFAULT_MODEL`, or the only model in handlers/. The health route answers 200
only when that model is ready (loading it first, if loading is lazy) and 503 otherwise;
the predict route takes `{"instances": [...]}` and answers `{"predictions": [...]}` exactly
like `POST /v1/models/<Name>:predict`, and its errors carry `error` beside `message` as
TF Serving's do.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify
from flask.blueprints import BlueprintSetupState

from serving.config.settings import Settings
from serving.http.state import get_state
from serving.observability.logs import tag_model
from serving.observability.prediction_log import logs_predictions
from serving.protocols.instances import predict_instances
from serving.runtime.registry import ModelRuntime, Registry
from serving.security.access import public

# Its two routes are the paths Vertex AI names, so they are added as the blueprint is
# registered, from the app's settings.
blueprint = Blueprint("vertex", __name__)


def default_model(settings: Settings, registry: Registry) -> ModelRuntime | None:
    """The model Vertex AI's routes serve: the one `DEFAULT_MODEL` names, else the only one, else None.

    Raises `SettingsError` when `DEFAULT_MODEL` names no served model.
    """
    name = settings.default_model_name([runtime.spec.name for runtime in registry])
    return None if name is None else registry.get(name)


@blueprint.record_once
def _add_routes(setup: BlueprintSetupState) -> None:
    """Add Vertex AI's health and predict routes when its variables are set.

    Raises `SettingsError` when they are set but no single model is to be served.
    """
    state = get_state(setup.app)
    settings = state.settings
    runtime = default_model(settings, state.registry)
    if settings.aip_health_route is None or settings.aip_predict_route is None:
        return
    if runtime is None:
        settings.refuse_vertex_without_model([r.spec.name for r in state.registry])
    name = runtime.spec.name

    def health() -> Response:
        tag_model(name)
        # Loads the model on first call when MODEL_LOADING=lazy; a 503 says why it cannot serve.
        get_state().inference.model_for(runtime)
        return jsonify(status="ready", model=name)

    def predict() -> Response:
        tag_model(name)
        return predict_instances(runtime)

    # Vertex AI checks callers with IAM before it forwards a request, and cannot forward an
    # API key: its two routes are open to whoever reaches the container.
    setup.add_url_rule(settings.aip_health_route, "health", public(health), methods=["GET"])
    setup.add_url_rule(settings.aip_predict_route, "predict", public(logs_predictions(predict)), methods=["POST"])
