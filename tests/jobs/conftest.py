"""Fixtures for the job tests: stores on SQLite, PostgreSQL and the Firestore emulator."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask

from serving.jobs.firestore_store import FirestoreJobStore
from serving.jobs.service import get_jobs
from serving.jobs.sql_engine import sqlite_url
from serving.jobs.sql_store import SqlJobStore
from serving.jobs.store import JobStore
from tests.conftest import FIXTURE_HANDLERS, require_service
from tests.servers import PROJECT_ROOT, free_port

JOB_HANDLERS = FIXTURE_HANDLERS / "jobs"
# The PostgreSQL the machines run (trust auth); CI starts it before the tests.
PG_BASE_URL = os.environ.get("MODEL_SERVING_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
FIRESTORE_PROJECT = "demo-model-serving"


def postgres_available() -> bool:
    import psycopg

    try:
        with psycopg.connect(PG_BASE_URL, connect_timeout=3):
            return True
    except psycopg.Error:
        return False


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A DATABASE_URL whose tables live in a fresh schema, dropped after the test."""
    require_service(postgres_available(), f"PostgreSQL is not reachable at {PG_BASE_URL}")
    import psycopg

    schema = f"jobs_test_{secrets.token_hex(6)}"
    with psycopg.connect(PG_BASE_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{PG_BASE_URL}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(PG_BASE_URL, autocommit=True) as conn:
            conn.execute("SET lock_timeout = '20s'")
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)


@pytest.fixture(scope="session")
def firestore_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`host:port` of a Firestore emulator started by gcloud on loopback for this session."""
    gcloud = shutil.which("gcloud")
    java = shutil.which("java")
    require_service(gcloud is not None and java is not None, "gcloud and java are needed for the Firestore emulator")
    assert gcloud is not None
    port = free_port()
    log_path = tmp_path_factory.mktemp("firestore") / "emulator.log"
    with log_path.open("wb") as log:
        # Its own process group: gcloud starts java as a child that outlives a plain kill.
        process = subprocess.Popen(
            [gcloud, "emulators", "firestore", "start", f"--host-port=127.0.0.1:{port}"],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                require_service(False, f"the Firestore emulator did not start: {log_path.read_text()[-2000:]}")
            time.sleep(0.25)
        yield f"127.0.0.1:{port}"
    finally:
        _kill_group(process)


def make_store(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> JobStore:
    """A prepared, empty store of `kind` for one test."""
    if kind == "sqlite":
        return SqlJobStore(sqlite_url(tmp_path / "jobs.sqlite"), data_dir=tmp_path)
    if kind == "postgresql":
        return SqlJobStore(request.getfixturevalue("pg_url"))
    host = request.getfixturevalue("firestore_emulator")
    monkeypatch: pytest.MonkeyPatch = request.getfixturevalue("monkeypatch")
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", host)
    return FirestoreJobStore(project=FIRESTORE_PROJECT, database="(default)", collection=f"jobs_{secrets.token_hex(6)}")


# The Firestore emulator is a process (gcloud starts it, in Java): end-to-end, like gunicorn.
@pytest.fixture(params=["sqlite", "postgresql", pytest.param("firestore", marks=pytest.mark.e2e)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[JobStore]:
    """Each store engine in turn, prepared and empty."""
    job_store = make_store(request.param, request, tmp_path)
    job_store.prepare()
    yield job_store
    job_store.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def sql_engine_env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """Server environment selecting each SQL job store in turn (for real-process tests)."""
    if request.param == "sqlite":
        return {"JOBS_STORE": "sqlite", "JOBS_DATA_DIR": str(tmp_path / "data")}
    return {"JOBS_STORE": "postgresql", "DATABASE_URL": request.getfixturevalue("pg_url")}


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05) -> Any:
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


def tasks_emulator_python() -> Path:
    """The interpreter of the Cloud Tasks emulator's own virtual environment (.ci/run makes it)."""
    configured = os.environ.get("TASKS_EMULATOR_PYTHON")
    return Path(configured) if configured else PROJECT_ROOT / ".venv-tasks-emulator" / "bin" / "python"


@pytest.fixture
def make_jobs_app(make_app: Callable[..., Flask], tmp_path: Path) -> Iterator[Callable[..., Flask]]:
    """Build apps serving tests/fixtures/handlers/jobs with a SQLite store in `tmp_path`.

    No worker threads unless the test asks (`jobs_workers=1`); every pool is stopped after.
    """
    apps: list[Flask] = []

    def build(**overrides: Any) -> Flask:
        values: dict[str, Any] = {
            "handlers_dir": JOB_HANDLERS,
            "jobs_data_dir": tmp_path / "data",
            "jobs_workers": 0,
            "jobs_poll_interval_s": 0.05,
            "jobs_lease_s": 5.0,
        }
        values.update(overrides)
        app = make_app(**values)
        apps.append(app)
        return app

    yield build
    for app in apps:
        service = get_jobs(app)
        if service is not None:
            service.stop(5)
            service.store.close()
