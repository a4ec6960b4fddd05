"""Liveness, readiness, App Engine warmup, and when setup() runs."""

from __future__ import annotations

import threading
from typing import Any

from tests.conftest import FIXTURE_HANDLERS


def test_healthz(client: Any) -> None:
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_readyz_ready_when_every_model_loaded(client: Any) -> None:
    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.get_json()["models"]["XXXModel"] == {"status": "ready"}


def test_readyz_503_names_the_failed_model(fixture_client: Any) -> None:
    response = fixture_client.get("/readyz")

    assert response.status_code == 503
    body = response.get_json()
    assert body["message"]
    assert body["models"]["FailingSetup"]["status"] == "failed"
    assert "OSError: artifact model.bin is missing" in body["models"]["FailingSetup"]["reason"]
    # A model whose optional packages are missing does not hold readiness back.
    assert body["models"]["NeedsMissing"]["status"] == "unavailable"
    assert body["models"]["Echo"] == {"status": "ready"}


def test_lazy_loading_waits_for_warmup(make_app: Any, tmp_path: Any) -> None:
    handlers = tmp_path / "handlers"
    handlers.mkdir()
    (handlers / "echo.py").write_text((FIXTURE_HANDLERS / "ok" / "echo.py").read_text())
    client = make_app(handlers_dir=handlers, model_loading="lazy").test_client()

    before = client.get("/readyz")
    warm = client.get("/_ah/warmup")
    after = client.get("/readyz")

    assert before.status_code == 503
    assert before.get_json()["models"]["Echo"]["status"] == "pending"
    assert warm.status_code == 200
    assert after.status_code == 200


def test_warmup_503_when_a_setup_fails(fixture_client: Any) -> None:
    response = fixture_client.get("/_ah/warmup")

    assert response.status_code == 503
    assert response.get_json()["models"]["FailingSetup"]["status"] == "failed"


def test_lazy_setup_runs_once_under_concurrent_first_requests(make_app: Any, tmp_path: Any) -> None:
    handlers = tmp_path / "handlers"
    handlers.mkdir()
    (handlers / "counted.py").write_text((FIXTURE_HANDLERS / "ok" / "counted_setup.py").read_text())
    app = make_app(handlers_dir=handlers, model_loading="lazy")
    results: list[Any] = []

    def call() -> None:
        results.append(app.test_client().post("/v1/Counted", json={}).get_json())

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert results == [{"result": 1}] * 8
