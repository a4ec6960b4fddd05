"""API keys on the HTTP API: who gets in, what they may call, and what the logs say."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask, jsonify
from flask.testing import FlaskClient

from serving.config.api_keys import parse_key_specs
from serving.config.settings import SettingsError
from serving.security.access import current_key_id, public
from tests.conftest import FIXTURE_HANDLERS

OPS = "ops-secret-0123456789abcdef"
WIDGET = "widget-secret-0123456789abcd"
KEYS = f"ops:{OPS}, widget:{WIDGET}:Echo"


@pytest.fixture
def keyed_app(make_app: Callable[..., Flask]) -> Flask:
    return make_app(handlers_dir=FIXTURE_HANDLERS / "ok", api_keys=parse_key_specs(KEYS))


@pytest.fixture
def keyed(keyed_app: Flask) -> FlaskClient:
    return keyed_app.test_client()


ECHO = {"text": "hi"}


@pytest.mark.parametrize(
    ("headers", "status", "message"),
    [
        pytest.param({}, 401, "Missing API key", id="no-key"),
        pytest.param({"Authorization": f"Bearer {OPS}"}, 200, None, id="bearer"),
        pytest.param({"Authorization": f"bearer   {OPS}"}, 200, None, id="bearer-lowercase"),
        pytest.param({"X-API-Key": OPS}, 200, None, id="x-api-key"),
        pytest.param({"Authorization": "Bearer wrong-secret-0123456789"}, 401, "Invalid API key", id="wrong-key"),
        pytest.param({"Authorization": f"Basic {OPS}"}, 401, "Missing API key", id="basic-scheme"),
        pytest.param({"Authorization": "Bearer "}, 401, "Missing API key", id="empty-bearer"),
        pytest.param({"X-API-Key": OPS[:-1]}, 401, "Invalid API key", id="truncated-key"),
        pytest.param({"X-API-Key": OPS + "\u00e9".encode().decode("latin-1")}, 401, "Invalid", id="non-ascii"),
    ],
)
def test_model_routes_require_a_key(keyed: FlaskClient, headers: dict[str, str], status: int, message: str) -> None:
    response = keyed.post("/v1/Echo", json=ECHO, headers=headers)

    assert response.status_code == status
    assert response.is_json
    if status == 401:
        body = response.get_json()
        assert body["code"] == "unauthorized"
        assert message in body["message"]
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert OPS not in response.get_data(as_text=True)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/models"),
        ("GET", "/v1/models/Echo"),
        ("POST", "/v1/Echo"),
        ("POST", "/v1/NoSuchModel"),  # 401 before 404: no probing for model names without a key
    ],
)
def test_every_model_route_is_protected(keyed: FlaskClient, method: str, path: str) -> None:
    assert keyed.open(path, method=method, json=ECHO).status_code == 401


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/_ah/warmup"])
def test_health_routes_stay_open(keyed: FlaskClient, path: str) -> None:
    response = keyed.get(path)

    assert response.status_code in (200, 503)  # 503 when a fixture model fails to load: not 401
    assert response.status_code != 401


def test_cors_preflight_needs_no_key(keyed: FlaskClient) -> None:
    response = keyed.options(
        "/v1/Echo",
        headers={
            "Origin": "https://shop.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )

    assert response.status_code == 204
    assert "authorization" in response.headers["Access-Control-Allow-Headers"].lower()


def test_401_carries_cors_headers_so_widgets_can_read_it(keyed: FlaskClient) -> None:
    response = keyed.post("/v1/Echo", json=ECHO, headers={"Origin": "https://shop.example"})

    assert response.status_code == 401
    assert response.headers["Access-Control-Allow-Origin"] == "*"


def test_unknown_routes_are_404_not_401(keyed: FlaskClient) -> None:
    assert keyed.get("/no/such/route").status_code == 404


def test_keys_off_by_default(fixture_client: FlaskClient) -> None:
    assert fixture_client.post("/v1/Echo", json=ECHO).status_code == 200


def test_scoped_key_may_call_only_its_models(keyed: FlaskClient) -> None:
    headers = {"X-API-Key": WIDGET}

    allowed = keyed.post("/v1/Echo", json=ECHO, headers=headers)
    forbidden = keyed.post("/v1/Crashing", json={}, headers=headers)
    described = keyed.get("/v1/models/Crashing", headers=headers)
    listed = keyed.get("/v1/models", headers=headers).get_json()["models"]
    listed_by_ops = keyed.get("/v1/models", headers={"X-API-Key": OPS}).get_json()["models"]

    assert allowed.status_code == 200
    assert forbidden.status_code == 403
    assert forbidden.get_json()["code"] == "model_forbidden"
    assert "Crashing" in forbidden.get_json()["message"]
    assert described.status_code == 403
    assert [entry["name"] for entry in listed] == ["Echo"]
    assert len(listed_by_ops) > 1


def test_current_key_id_tells_other_modules_which_key_called(keyed_app: Flask) -> None:
    seen: list[Any] = []

    @keyed_app.get("/v1/whoami")
    def whoami() -> Any:
        seen.append(current_key_id())
        return jsonify(key=current_key_id())

    @keyed_app.get("/open")
    @public
    def open_route() -> Any:
        seen.append(current_key_id())
        return jsonify(key=current_key_id())

    client = keyed_app.test_client()
    client.get("/v1/whoami", headers={"Authorization": f"Bearer {WIDGET}"})
    client.get("/open")
    blocked = client.get("/v1/whoami")

    assert seen == ["widget", None]
    assert blocked.status_code == 401


def test_logs_carry_the_key_id_never_the_secret(keyed: FlaskClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)

    keyed.post("/v1/Echo", json=ECHO, headers={"Authorization": f"Bearer {OPS}"})
    keyed.post("/v1/Echo", json=ECHO, headers={"X-API-Key": "guess-0123456789abcdef"})

    access = [r for r in caplog.records if r.name == "serving.request"]
    assert [getattr(r, "key_id", None) for r in access] == ["ops", None]
    everything = " ".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert OPS not in everything
    assert "guess-0123456789abcdef" not in everything


def test_start_up_log_names_keys_by_id_and_fingerprint(
    make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)

    make_app(handlers_dir=FIXTURE_HANDLERS / "ok", api_keys=parse_key_specs(KEYS))

    line = next(r.getMessage() for r in caplog.records if r.name == "serving.security.access")
    assert "ops (sha256 " in line
    assert "widget (sha256 " in line
    assert OPS not in line
    assert WIDGET not in line


def test_scope_naming_an_unknown_model_stops_start_up(make_app: Callable[..., Flask]) -> None:
    with pytest.raises(SettingsError, match="key 'w' is scoped to 'Ecko', which is not a served model"):
        make_app(handlers_dir=FIXTURE_HANDLERS / "ok", api_keys=parse_key_specs(f"w:{WIDGET}:Ecko"))
