"""Vertex AI's routes answer every error in TF Serving's shape, routing errors included."""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask

from tests.conftest import FIXTURE_HANDLERS

HEALTH, PREDICT = "/v1/endpoints/1/deployedModels/2", "/v1/endpoints/1/deployedModels/2:predict"


def test_a_405_on_the_predict_route_carries_error(make_app: Callable[..., Flask]) -> None:
    app = make_app(
        handlers_dir=FIXTURE_HANDLERS / "batch",
        aip_health_route=HEALTH,
        aip_predict_route=PREDICT,
        default_model="Batched",
    )

    response = app.test_client().get(PREDICT)

    assert response.status_code == 405
    assert response.get_json()["error"] == response.get_json()["message"]
    assert set(response.headers["Allow"].split(", ")) == {"POST", "OPTIONS"}
