"""Job settings: parsing, and start-up refusing combinations that would lose jobs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from serving.app import create_app
from serving.config.settings import Settings, SettingsError
from serving.jobs.mounts import filesystem_type
from serving.jobs.service import get_jobs
from serving.jobs.sql_engine import normalise_database_url
from serving.jobs.stores import resolve_store_kind
from tests.jobs.conftest import JOB_HANDLERS

QUEUE = "projects/p/locations/l/queues/jobs"


@pytest.mark.parametrize(
    ("env", "field", "value"),
    [
        ({"JOBS_STORE": "Firestore"}, "jobs_store", "firestore"),
        ({"JOBS_DISPATCHER": "cloud-tasks"}, "jobs_dispatcher", "cloud-tasks"),
        ({"JOBS_WORKERS": "0"}, "jobs_workers", 0),
        ({"JOBS_LEASE_S": "2.5"}, "jobs_lease_s", 2.5),
        ({"JOBS_RETENTION_S": "3600"}, "jobs_retention_s", 3600),
        ({"JOBS_TASKS_QUEUE": QUEUE}, "jobs_tasks_queue", QUEUE),
        ({"JOBS_TASKS_URL": "https://svc-abc.a.run.app/"}, "jobs_tasks_url", "https://svc-abc.a.run.app"),
        ({"JOBS_WEBHOOK_ALLOW_LOOPBACK": "yes"}, "jobs_webhook_allow_loopback", True),
    ],
)
def test_job_settings_from_the_environment(env: dict[str, str], field: str, value: Any) -> None:
    assert getattr(Settings.from_env(env), field) == value


@pytest.mark.parametrize(
    "env",
    [
        {"JOBS_STORE": "redis"},
        {"JOBS_DISPATCHER": "celery"},
        {"JOBS_WORKERS": "-1"},
        {"JOBS_LEASE_S": "0"},
        {"JOBS_MAX_ATTEMPTS": "0"},
        {"JOBS_RETENTION_S": "5"},
        {"JOBS_TASKS_QUEUE": "jobs"},
        {"JOBS_TASKS_URL": "svc.a.run.app"},
        {"JOBS_FIRESTORE_COLLECTION": "a/b"},
    ],
    ids=lambda env: next(iter(env)),
)
def test_bad_job_settings_name_the_variable(env: dict[str, str]) -> None:
    name = next(iter(env))
    with pytest.raises(SettingsError, match=f"^{name}="):
        Settings.from_env(env)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"jobs_store": "sqlite", "k_service": "svc"}, "instance's disk vanishes"),
        ({"jobs_store": "sqlite", "gae_env": "standard"}, "instance's disk vanishes"),
        (
            {"jobs_store": "sqlite", "k_service": "svc", "jobs_dispatcher": "cloud-tasks", "jobs_tasks_queue": QUEUE},
            "a SQLite file lives on one instance's disk only",
        ),
        ({"k_service": "svc", "jobs_dispatcher": "cloud-tasks", "jobs_tasks_queue": QUEUE}, "needs a job store"),
        ({"jobs_store": "postgresql"}, "needs DATABASE_URL"),
        ({"database_url": "mysql://x@y/z"}, "DATABASE_URL is not usable"),
        ({"database_url": "not a url"}, "not a valid database URL"),
        ({"jobs_dispatcher": "cloud-tasks"}, "needs JOBS_TASKS_QUEUE"),
        (
            {"jobs_dispatcher": "cloud-tasks", "jobs_tasks_queue": QUEUE, "jobs_tasks_target": "app_engine"},
            "works only on App Engine",
        ),
        (
            {"jobs_dispatcher": "cloud-tasks", "jobs_tasks_queue": QUEUE, "jobs_tasks_target": "http"},
            "needs JOBS_TASKS_URL",
        ),
        (
            {
                "jobs_dispatcher": "cloud-tasks",
                "jobs_tasks_queue": QUEUE,
                "jobs_tasks_target": "http",
                "jobs_tasks_url": "https://svc.a.run.app",
            },
            "needs JOBS_TASKS_SERVICE_ACCOUNT",
        ),
        ({"jobs_data_dir": "a-file/jobs"}, "not a writable directory"),
    ],
    ids=[
        "sqlite-on-cloud-run",
        "sqlite-on-app-engine",
        "sqlite-with-cloud-tasks-serverless",
        "cloud-tasks-without-store",
        "postgresql-without-url",
        "unsupported-database",
        "garbage-url",
        "cloud-tasks-without-queue",
        "app-engine-target-elsewhere",
        "http-target-without-url",
        "http-target-without-account",
        "unwritable-data-dir",
    ],
)
def test_start_up_refuses_combinations_that_would_lose_jobs(
    overrides: dict[str, Any], message: str, tmp_path: Path
) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    values = {"jobs_data_dir": tmp_path, **overrides}
    if isinstance(values["jobs_data_dir"], str):
        values["jobs_data_dir"] = tmp_path / values["jobs_data_dir"]
    settings = Settings(handlers_dir=JOB_HANDLERS, **values)

    with pytest.raises(SettingsError, match=message):
        create_app(settings)


def test_serverless_without_a_database_turns_jobs_off_instead_of_losing_them(tmp_path: Path) -> None:
    settings = Settings(handlers_dir=JOB_HANDLERS, jobs_data_dir=tmp_path, k_service="svc")

    app = create_app(settings)

    assert resolve_store_kind(settings) == "none"
    assert get_jobs(app) is None


def test_an_explicit_demo_override_accepts_an_ephemeral_sqlite(tmp_path: Path) -> None:
    settings = Settings(
        handlers_dir=JOB_HANDLERS, jobs_data_dir=tmp_path, k_service="svc", jobs_allow_ephemeral_store=True
    )

    assert get_jobs(create_app(settings)) is not None


def test_the_default_is_sqlite_locally_and_postgresql_with_a_url() -> None:
    assert resolve_store_kind(Settings()) == "sqlite"
    assert resolve_store_kind(Settings(database_url="postgresql://u@h/d")) == "postgresql"
    assert resolve_store_kind(Settings(jobs_store="firestore")) == "firestore"


def test_building_the_app_touches_no_database(tmp_path: Path) -> None:
    create_app(Settings(handlers_dir=JOB_HANDLERS, jobs_data_dir=tmp_path / "data"))

    assert not (tmp_path / "data").exists()


MOUNTS = """\
/dev/vda / ext4 rw,relatime 0 0
tmpfs /tmp tmpfs rw,nosuid 0 0
/dev/vdb /tmp/disk ext4 rw 0 0
tmpfs /dev/shm tmpfs rw 0 0
"""


@pytest.mark.parametrize(
    ("path", "kind"),
    [("/srv/app/var", "ext4"), ("/tmp/jobs", "tmpfs"), ("/tmp/disk/jobs", "ext4"), ("/tmpfoo", "ext4")],
)
def test_filesystem_type_finds_the_longest_mount(path: str, kind: str) -> None:
    assert filesystem_type(Path(path), MOUNTS) == kind


def test_a_data_dir_on_tmpfs_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("serving.jobs.stores.filesystem_type", lambda path: "tmpfs")

    with pytest.raises(SettingsError, match="is on tmpfs"):
        create_app(Settings(handlers_dir=JOB_HANDLERS, jobs_data_dir=tmp_path))


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgres://u:p@h/db", "postgresql+psycopg://u:p@h/db"),
        ("postgresql://u@/db?host=/cloudsql/p:r:i", "postgresql+psycopg://u@/db?host=/cloudsql/p:r:i"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
    ],
)
def test_database_urls_use_psycopg_3(url: str, expected: str) -> None:
    assert normalise_database_url(url) == expected
