"""Prediction logging: opt-in, sampled, one structured entry per prediction, never in the way."""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask

from serving.http.state import get_state
from serving.observability.prediction_log import PredictionLog
from tests.conftest import FIXTURE_HANDLERS

ARTIFACT_HANDLERS = FIXTURE_HANDLERS / "artifacts"


def _entries(app: Flask, caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    prediction_log = get_state(app).prediction_log
    assert prediction_log is not None
    prediction_log.flush()
    return [record.__dict__ for record in caplog.records if record.name == "serving.prediction"]


def test_off_by_default(make_app: Callable[..., Flask]) -> None:
    assert get_state(make_app(handlers_dir=ARTIFACT_HANDLERS)).prediction_log is None


def test_each_prediction_gets_one_entry_with_version_and_input_digest(
    make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(handlers_dir=ARTIFACT_HANDLERS, prediction_log=True)
    client = app.test_client()
    body = json.dumps({"secret": "do not log me"}).encode()

    with caplog.at_level(logging.INFO, logger="serving.prediction"):
        response = client.post("/v1/Files", data=body, content_type="application/json", headers={"X-Request-Id": "r-1"})
        client.post("/v1/models/Plain:predict", json={"instances": [{}, {}]})
        client.get("/v1/models")  # not a prediction
        entries = _entries(app, caplog)

    assert len(entries) == 2
    first = entries[0]
    assert first["message"] == "prediction"
    assert first["model"] == "Files"
    assert first["model_version"] == response.headers["X-Model-Version"]
    assert first["request_id"] == "r-1"
    assert first["status"] == 200
    assert first["latency_ms"] >= 0
    assert first["input_bytes"] == len(body)
    assert first["input_sha256"] == hashlib.sha256(body).hexdigest()
    assert "input" not in first
    assert entries[1]["model"] == "Plain"


def test_raw_input_only_when_asked(make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture) -> None:
    app = make_app(handlers_dir=ARTIFACT_HANDLERS, prediction_log=True, prediction_log_input=True)

    with caplog.at_level(logging.INFO, logger="serving.prediction"):
        app.test_client().post("/v1/Plain", json={"name": "Ada"})
        entries = _entries(app, caplog)

    assert json.loads(entries[0]["input"]) == {"name": "Ada"}


def test_sampling_logs_about_the_rate(make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture) -> None:
    app = make_app(handlers_dir=ARTIFACT_HANDLERS, prediction_log=True, prediction_log_sample_rate=0.25)
    client = app.test_client()

    with caplog.at_level(logging.INFO, logger="serving.prediction"):
        for _ in range(400):
            client.post("/v1/Plain", json={})
        entries = _entries(app, caplog)

    # Binomial(400, 0.25): mean 100, standard deviation ~8.7; these bounds are ~6 sigma.
    assert 48 <= len(entries) <= 152


def test_sampling_neither_reads_nor_moves_the_shared_random_generator() -> None:
    # A handler that seeds `random` must not make every worker sample the same requests.
    log = PredictionLog(sample_rate=0.5, include_input=False)
    random.seed(0)
    state = random.getstate()
    first = [log.sampled() for _ in range(64)]
    assert random.getstate() == state
    random.seed(0)
    assert [log.sampled() for _ in range(64)] != first


def test_a_failing_log_handler_does_not_fail_the_request(
    make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            raise OSError("stdout is gone")

        def handleError(self, record: logging.LogRecord) -> None:
            raise OSError("and so is stderr")

    app = make_app(handlers_dir=ARTIFACT_HANDLERS, prediction_log=True)
    broken = Broken()
    logger = logging.getLogger("serving.prediction")
    logger.addHandler(broken)
    try:
        response = app.test_client().post("/v1/Plain", json={})
        prediction_log: PredictionLog | None = get_state(app).prediction_log
        assert prediction_log is not None
        prediction_log.flush()
    finally:
        logger.removeHandler(broken)

    assert response.status_code == 200
    assert prediction_log.dropped == 1
