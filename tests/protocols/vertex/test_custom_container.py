"""Vertex AI's custom container contract: AIP_* settings, its routes, and a real gunicorn."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask

from serving.config.settings import Settings, SettingsError
from tests.conftest import FIXTURE_HANDLERS
from tests.servers import free_port, gunicorn_command, http_status, running_server

BATCH_HANDLERS = FIXTURE_HANDLERS / "batch"
VERTEX_ENV = {
    "AIP_HEALTH_ROUTE": "/v1/endpoints/123/deployedModels/456",
    "AIP_PREDICT_ROUTE": "/v1/endpoints/123/deployedModels/456:predict",
}


@pytest.mark.parametrize(
    ("env", "field", "value"),
    [
        ({"AIP_HTTP_PORT": "8501"}, "aip_http_port", 8501),
        ({"AIP_HTTP_PORT": "8501", "PORT": "9000"}, "listen_port", 8501),
        ({"PORT": "9000"}, "listen_port", 9000),
        (VERTEX_ENV, "aip_predict_route", VERTEX_ENV["AIP_PREDICT_ROUTE"]),
        (VERTEX_ENV, "vertex_ai", True),
        ({}, "vertex_ai", False),
        ({"DEFAULT_MODEL": " Iris "}, "default_model", "Iris"),
        ({"PREDICT_MAX_INSTANCES": "50"}, "predict_max_instances", 50),
        ({}, "predict_max_instances", 1000),
    ],
)
def test_settings_from_environment(env: dict[str, str], field: str, value: Any) -> None:
    assert getattr(Settings.from_env(env), field) == value


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"AIP_HTTP_PORT": "0"}, "AIP_HTTP_PORT='0' is not valid"),
        ({"AIP_HEALTH_ROUTE": "health", "AIP_PREDICT_ROUTE": "/p"}, "AIP_HEALTH_ROUTE='health' is not valid"),
        ({"AIP_HEALTH_ROUTE": "/h", "AIP_PREDICT_ROUTE": "/<name>"}, "AIP_PREDICT_ROUTE='/<name>' is not valid"),
        ({"AIP_HEALTH_ROUTE": "/h"}, "AIP_HEALTH_ROUTE is set but AIP_PREDICT_ROUTE is not"),
        ({"AIP_PREDICT_ROUTE": "/p"}, "AIP_PREDICT_ROUTE is set but AIP_HEALTH_ROUTE is not"),
        ({"AIP_HEALTH_ROUTE": "/same", "AIP_PREDICT_ROUTE": "/same"}, "must differ from AIP_PREDICT_ROUTE"),
        ({"DEFAULT_MODEL": " "}, "DEFAULT_MODEL=' ' is not valid"),
        ({"PREDICT_MAX_INSTANCES": "0"}, "PREDICT_MAX_INSTANCES='0' is not valid"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env(env)

    assert message in str(info.value)


def _vertex_app(make_app: Callable[..., Flask], **overrides: Any) -> Flask:
    values: dict[str, Any] = {
        "handlers_dir": BATCH_HANDLERS,
        "aip_health_route": VERTEX_ENV["AIP_HEALTH_ROUTE"],
        "aip_predict_route": VERTEX_ENV["AIP_PREDICT_ROUTE"],
        "default_model": "Batched",
        **overrides,
    }
    return make_app(**values)


def test_vertex_routes_serve_the_default_model(make_app: Callable[..., Flask]) -> None:
    client = _vertex_app(make_app).test_client()

    health = client.get(VERTEX_ENV["AIP_HEALTH_ROUTE"])
    predict = client.post(VERTEX_ENV["AIP_PREDICT_ROUTE"], json={"instances": [{"x": 1}, {"x": 2}]})

    assert (health.status_code, health.get_json()) == (200, {"status": "ready", "model": "Batched"})
    assert predict.get_json() == {"predictions": [{"double": 2, "via": "batch"}, {"double": 4, "via": "batch"}]}


def test_vertex_predict_errors_carry_error_and_the_path(make_app: Callable[..., Flask]) -> None:
    client = _vertex_app(make_app).test_client()

    response = client.post(VERTEX_ENV["AIP_PREDICT_ROUTE"], json={"instances": [{"x": 1}, {"x": "two"}]})

    assert response.status_code == 400
    assert response.get_json()["path"] == "$.instances[1].x"
    assert response.get_json()["error"] == response.get_json()["message"]


def test_single_model_directory_needs_no_default_model(make_app: Callable[..., Flask], tmp_path: Any) -> None:
    (tmp_path / "only.py").write_text((BATCH_HANDLERS / "shout.py").read_text())
    client = make_app(handlers_dir=tmp_path, aip_health_route="/health", aip_predict_route="/predict").test_client()

    assert client.get("/health").get_json() == {"status": "ready", "model": "Shout"}
    assert client.post("/predict", json={"instances": ["a"]}).get_json() == {"predictions": ["A"]}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        pytest.param({"default_model": None}, "set DEFAULT_MODEL to one of them", id="several-models"),
        pytest.param({"default_model": "Nope"}, "DEFAULT_MODEL='Nope' is not valid: no such model", id="unknown"),
    ],
)
def test_vertex_without_a_single_model_fails_at_start(
    make_app: Callable[..., Flask], overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(SettingsError) as info:
        _vertex_app(make_app, **overrides)

    assert message in str(info.value)


def test_unknown_default_model_fails_at_start_even_without_vertex(make_app: Callable[..., Flask]) -> None:
    with pytest.raises(SettingsError, match="DEFAULT_MODEL='Nope'"):
        make_app(handlers_dir=BATCH_HANDLERS, default_model="Nope")


@pytest.mark.parametrize(
    ("model", "status", "message_part"),
    [
        pytest.param("FailingSetup", 503, "artifact model.bin is missing", id="setup-failed"),
        pytest.param("NeedsMissing", 503, "a_package_that_is_not_installed_anywhere", id="unavailable"),
        pytest.param("Echo", 200, None, id="ready"),
    ],
)
def test_vertex_health_is_200_only_when_the_model_is_ready(
    make_app: Callable[..., Flask], model: str, status: int, message_part: str | None
) -> None:
    app = _vertex_app(make_app, handlers_dir=FIXTURE_HANDLERS / "ok", default_model=model)

    response = app.test_client().get(VERTEX_ENV["AIP_HEALTH_ROUTE"])

    assert response.status_code == status
    if message_part:
        assert message_part in response.get_json()["message"]


def test_vertex_health_loads_a_lazy_model(make_app: Callable[..., Flask]) -> None:
    app = _vertex_app(make_app, model_loading="lazy", default_model="Counted", handlers_dir=FIXTURE_HANDLERS / "ok")

    response = app.test_client().get(VERTEX_ENV["AIP_HEALTH_ROUTE"])

    assert response.status_code == 200
    assert app.extensions["serving"].registry.get("Counted").status.value == "ready"


@pytest.mark.e2e
def test_real_gunicorn_listens_on_aip_http_port_and_serves_vertex_routes(tmp_path: Path) -> None:
    port, other_port = free_port(), free_port()
    env = {
        **VERTEX_ENV,
        "AIP_HTTP_PORT": str(port),
        "PORT": str(other_port),  # AIP_HTTP_PORT must win over PORT
        "HOST": "127.0.0.1",
        "HANDLERS_DIR": str(BATCH_HANDLERS),
        "DEFAULT_MODEL": "Batched",
        "GUNICORN_WORKERS": "1",
    }
    command = gunicorn_command()
    log_path = tmp_path / "gunicorn.log"
    with running_server(command, port=port, log_path=log_path, env=env, ready_path=VERTEX_ENV["AIP_HEALTH_ROUTE"]):
        base = f"http://127.0.0.1:{port}"
        health = requests.get(base + VERTEX_ENV["AIP_HEALTH_ROUTE"], timeout=5)
        predict = requests.post(
            base + VERTEX_ENV["AIP_PREDICT_ROUTE"], json={"instances": [{"x": 3}], "parameters": {}}, timeout=5
        )
        invalid = requests.post(base + VERTEX_ENV["AIP_PREDICT_ROUTE"], json={"instances": [{}]}, timeout=5)
        on_port = http_status(f"http://127.0.0.1:{other_port}/healthz", timeout=1)

    assert health.status_code == 200
    assert health.json() == {"status": "ready", "model": "Batched"}
    assert predict.json() == {"predictions": [{"double": 6, "via": "single"}]}
    assert invalid.status_code == 400
    assert invalid.json()["error"] == "instances[0]: 'x' is a required property"
    assert on_port is None  # nothing listens on PORT
