"""Shared fixtures: apps built from settings, test clients, and real gunicorn servers."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from serving.app import create_app
from serving.config.settings import Settings
from tests.servers import ServerProcess, free_port, gunicorn_command, running_server

FIXTURE_HANDLERS = Path(__file__).parent / "fixtures" / "handlers"


def require_service(available: bool, reason: str) -> None:
    """Skip with `reason` when a service is missing, unless CI demands every service.

    `.ci/run` sets MODEL_SERVING_REQUIRE_SERVICES=1 after starting every service, so a
    missing one fails CI instead of silently skipping.
    """
    if available:
        return
    if os.environ.get("MODEL_SERVING_REQUIRE_SERVICES") == "1":
        pytest.fail(f"required service missing: {reason}")
    pytest.skip(reason)


def require_export_tools(*modules: str) -> None:
    """Skip (fail in CI) unless the export's packages are installed (requirements-export-test.txt).

    Tests that call this are marked `export`: `make test` runs them on Python 3.11, where
    torch's pinned CPU wheel is at hand, and deselects them on 3.13 (docs/development.md).
    """
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    require_service(not missing, f"{', '.join(missing)} missing: pip install -r requirements-export-test.txt")


@pytest.fixture(autouse=True)
def _restore_environ() -> Iterator[None]:
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def make_app() -> Callable[..., Flask]:
    """Build an app from `Settings` defaults plus keyword overrides."""

    def build(**overrides: Any) -> Flask:
        settings = Settings(**overrides)
        app = create_app(settings)
        app.testing = True
        return app

    return build


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    """The app serving the project's own handlers/ (XXXModel and friends)."""
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def fixture_app(make_app: Callable[..., Flask]) -> Flask:
    """An app serving the small edge-case handlers in tests/fixtures/handlers/ok."""
    return make_app(handlers_dir=FIXTURE_HANDLERS / "ok")


@pytest.fixture
def fixture_client(fixture_app: Flask) -> FlaskClient:
    return fixture_app.test_client()


@pytest.fixture
def start_gunicorn(tmp_path: Path) -> Callable[..., Any]:
    """Start gunicorn with gunicorn.conf.py on a free port; returns a context manager."""

    def start(env: dict[str, str] | None = None, *extra: str) -> Any:
        port = free_port()
        merged = {
            "PORT": str(port),
            "HOST": "127.0.0.1",
            "GUNICORN_WORKERS": "2",
            "JOBS_DATA_DIR": str(tmp_path / "jobs"),  # never the project's own var/
            **(env or {}),
        }
        return running_server(
            gunicorn_command(*extra), port=port, log_path=tmp_path / f"gunicorn-{port}.log", env=merged
        )

    return start


@pytest.fixture
def gunicorn_server(start_gunicorn: Callable[..., Any]) -> Iterator[ServerProcess]:
    """The project's app under a real gunicorn, as app.yaml runs it."""
    with start_gunicorn() as server:
        yield server


@pytest.fixture
def lazy_client(make_app: Callable[..., Flask]) -> FlaskClient:
    """The project's handlers, each model loaded on first use (not all of them per test)."""
    return make_app(model_loading="lazy").test_client()


@pytest.fixture
def lazy_gunicorn(tmp_path: Path) -> Iterator[ServerProcess]:
    """The project's handlers under a real gunicorn, each model loaded on first use."""
    port = free_port()
    env = {"PORT": str(port), "HOST": "127.0.0.1", "GUNICORN_WORKERS": "1", "MODEL_LOADING": "lazy"}
    log_path = tmp_path / "gunicorn.log"
    with running_server(gunicorn_command(), port=port, log_path=log_path, env=env, ready_path="/healthz") as server:
        yield server
