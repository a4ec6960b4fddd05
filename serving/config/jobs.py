"""Settings of asynchronous jobs, and the start-up checks that refuse a set-up that would lose jobs.

The job store and dispatcher are chosen in serving/jobs/stores.py; the combinations it
must refuse are decided here, so a misconfigured deployment stops at start-up with a
message naming the variables to change.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from serving.config import parsers
from serving.config.fields import PROJECT_ROOT, SettingsError, setting

T = TypeVar("T")


@dataclass(frozen=True)
class JobsSettings:
    jobs_store: str = setting(
        "JOBS_STORE",
        "auto",
        "Where jobs are kept: `sqlite` (a file in `JOBS_DATA_DIR`), `postgresql` (`DATABASE_URL`), "
        "`firestore`, or `none` (asynchronous requests get 503). `auto`: `postgresql` when `DATABASE_URL` "
        "is set, else `sqlite` except on App Engine/Cloud Run, whose disks vanish with the instance (`none`).",
        parsers.one_of("auto", "sqlite", "postgresql", "firestore", "none"),
    )
    database_url: str = setting(
        "DATABASE_URL",
        "",
        "PostgreSQL URL of the job store, e.g. `postgresql://user:pass@/db?host=/cloudsql/PROJECT:REGION:INSTANCE`.",
        secret=True,
    )
    jobs_data_dir: Path = setting(
        "JOBS_DATA_DIR",
        PROJECT_ROOT / "var",
        "Writable, persistent directory of the SQLite job store (`jobs.sqlite`); refused when it is on tmpfs.",
        parsers.path,
    )
    jobs_allow_ephemeral_store: bool = setting(
        "JOBS_ALLOW_EPHEMERAL_STORE",
        False,
        "Accept a SQLite job store on tmpfs or a serverless instance's disk, where jobs are lost with it (demos only).",
        parsers.parse_bool,
    )
    jobs_dispatcher: str = setting(
        "JOBS_DISPATCHER",
        "threads",
        "Who runs jobs: `threads` (a pool in every server process that claims jobs from the store) or "
        "`cloud-tasks` (each job is a Cloud Tasks HTTP task delivered to `POST /internal/jobs/<id>/run`).",
        parsers.one_of("threads", "cloud-tasks"),
    )
    jobs_workers: int = setting(
        "JOBS_WORKERS",
        2,
        "Jobs run at once per server process by the `threads` dispatcher; 0 makes the process submit-only.",
        parsers.int_between(0, 64),
    )
    jobs_poll_interval_s: float = setting(
        "JOBS_POLL_INTERVAL_S",
        1.0,
        "Seconds an idle worker thread waits before looking for jobs again (submits in the same process wake it).",
        parsers.float_between(0.05, 60),
    )
    jobs_lease_s: float = setting(
        "JOBS_LEASE_S",
        60.0,
        "Seconds a claim lasts without a heartbeat (sent every third of it); a job whose process died is "
        "re-run after its lease expires.",
        parsers.float_between(1, 3600),
    )
    jobs_max_attempts: int = setting(
        "JOBS_MAX_ATTEMPTS",
        3,
        "Times a job is started before it fails for good (a start counts when its process dies mid-job).",
        parsers.int_between(1, 100),
    )
    jobs_timeout_s: float = setting(
        "JOBS_TIMEOUT_S",
        900.0,
        "Seconds a job may run before it fails as timed out (a handler's `TIMEOUT_S` overrides it).",
        parsers.float_between(1, 86400),
    )
    jobs_retention_s: int = setting(
        "JOBS_RETENTION_S",
        7 * 24 * 3600,
        "Seconds finished jobs and their results are kept before they are purged.",
        parsers.int_between(60, 10 * 365 * 24 * 3600),
    )
    jobs_purge_interval_s: float = setting(
        "JOBS_PURGE_INTERVAL_S",
        600.0,
        "Seconds between purges of expired jobs (by the `threads` dispatcher, or after Cloud Tasks runs).",
        parsers.float_between(1, 86400),
    )
    jobs_webhook_allow_loopback: bool = setting(
        "JOBS_WEBHOOK_ALLOW_LOOPBACK",
        False,
        "Allow `http://` webhooks to loopback addresses (local development); other targets must be "
        "`https` to public addresses.",
        parsers.parse_bool,
    )
    jobs_webhook_max_attempts: int = setting(
        "JOBS_WEBHOOK_MAX_ATTEMPTS",
        6,
        "Deliveries tried per webhook before giving up.",
        parsers.int_between(1, 50),
    )
    jobs_webhook_backoff_s: float = setting(
        "JOBS_WEBHOOK_BACKOFF_S",
        10.0,
        "Seconds before the first webhook retry; each later retry waits twice as long (at most an hour).",
        parsers.float_between(0.01, 3600),
    )
    jobs_webhook_timeout_s: float = setting(
        "JOBS_WEBHOOK_TIMEOUT_S",
        10.0,
        "Seconds a webhook target has to connect and answer.",
        parsers.float_between(0.1, 120),
    )
    jobs_firestore_project: str = setting(
        "JOBS_FIRESTORE_PROJECT",
        "",
        "Google Cloud project of the Firestore job store (default: the environment's project). "
        "`FIRESTORE_EMULATOR_HOST` points the client at an emulator.",
    )
    jobs_firestore_database: str = setting(
        "JOBS_FIRESTORE_DATABASE", "(default)", "Firestore database id of the job store."
    )
    jobs_firestore_collection: str = setting(
        "JOBS_FIRESTORE_COLLECTION",
        "jobs",
        "Firestore collection of the jobs (idempotency keys go to `<collection>_keys`).",
        parsers.collection_name,
    )
    jobs_tasks_queue: str = setting(
        "JOBS_TASKS_QUEUE",
        "",
        "Cloud Tasks queue of the `cloud-tasks` dispatcher: `projects/P/locations/L/queues/Q`.",
        parsers.tasks_queue,
    )
    jobs_tasks_target: str = setting(
        "JOBS_TASKS_TARGET",
        "app_engine",
        "`app_engine`: App Engine tasks to this service (trusted by `X-AppEngine-QueueName`); `http`: HTTP "
        "tasks to `JOBS_TASKS_URL` with an OIDC token (Cloud Run).",
        parsers.one_of("app_engine", "http"),
    )
    jobs_tasks_url: str = setting(
        "JOBS_TASKS_URL",
        "",
        "Base URL of this service for `http` tasks, e.g. `https://my-service-abc123-uc.a.run.app`.",
        parsers.base_url,
    )
    jobs_tasks_service_account: str = setting(
        "JOBS_TASKS_SERVICE_ACCOUNT",
        "",
        "Service account whose OIDC token signs `http` tasks; the run endpoint accepts only its tokens.",
    )
    jobs_tasks_audience: str = setting(
        "JOBS_TASKS_AUDIENCE",
        "",
        "Audience of the OIDC token of `http` tasks (default: `JOBS_TASKS_URL`).",
    )
    jobs_tasks_oidc_certs_url: str = setting(
        "JOBS_TASKS_OIDC_CERTS_URL",
        "https://www.googleapis.com/oauth2/v1/certs",
        "Where the public keys that sign Google's OIDC tokens are fetched (tests point it at a local server).",
        parsers.base_url,
    )
    jobs_tasks_emulator_host: str = setting(
        "JOBS_TASKS_EMULATOR_HOST",
        "",
        "`host:port` of a Cloud Tasks emulator (gcloud-tasks-emulator) to use instead of Google's API.",
    )

    def jobs_disabled_reason(self) -> str:
        """Why asynchronous requests are refused when `JOBS_STORE` resolved to `none`."""
        if self.jobs_store == "none":
            return "Asynchronous jobs are turned off on this server (JOBS_STORE=none)"
        return (
            "Asynchronous jobs need a durable job store on this platform: set DATABASE_URL (PostgreSQL) "
            "or JOBS_STORE=firestore"
        )

    def check_dispatcher(self, store_kind: str, *, serverless: bool, on_app_engine: bool) -> None:
        """Refuse a `cloud-tasks` dispatcher without what it needs (a shared store, a queue, a target)."""
        if self.jobs_dispatcher != "cloud-tasks":
            return
        if store_kind == "none":
            raise SettingsError(f"JOBS_DISPATCHER=cloud-tasks needs a job store: {self.jobs_disabled_reason()}")
        if store_kind == "sqlite" and serverless:
            raise SettingsError(
                "JOBS_DISPATCHER=cloud-tasks with a SQLite job store would lose jobs: Cloud Tasks delivers each job "
                "to any instance, and a SQLite file lives on one instance's disk only. Set DATABASE_URL or "
                "JOBS_STORE=firestore"
            )
        if not self.jobs_tasks_queue:
            raise SettingsError("JOBS_DISPATCHER=cloud-tasks needs JOBS_TASKS_QUEUE (projects/P/locations/L/queues/Q)")
        if self.jobs_tasks_target == "app_engine" and not on_app_engine:
            raise SettingsError(
                "JOBS_TASKS_TARGET=app_engine works only on App Engine (GAE_ENV=standard), the only place where "
                "X-AppEngine-QueueName proves the caller; elsewhere use JOBS_TASKS_TARGET=http"
            )
        if self.jobs_tasks_target == "http":
            if not self.jobs_tasks_url:
                raise SettingsError("JOBS_TASKS_TARGET=http needs JOBS_TASKS_URL (this service's https:// URL)")
            if not self.jobs_tasks_service_account:
                raise SettingsError(
                    "JOBS_TASKS_TARGET=http needs JOBS_TASKS_SERVICE_ACCOUNT (the tasks' OIDC identity)"
                )

    def open_database(self, build: Callable[[str], T], store_error: type[Exception]) -> T:
        """`build(DATABASE_URL)`, the PostgreSQL job store; a URL it cannot use stops start-up.

        `store_error` is the store's own error class: its message says what is wrong.
        """
        if not self.database_url:
            raise SettingsError("JOBS_STORE=postgresql needs DATABASE_URL (a postgresql:// URL)")
        try:
            return build(self.database_url)
        except store_error as exc:
            raise SettingsError(f"DATABASE_URL is not usable: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - SQLAlchemy's URL parser raises several kinds
            raise SettingsError(f"DATABASE_URL is not a valid database URL: {exc.__class__.__name__}") from None

    def check_sqlite_dir(self, *, serverless: bool, filesystem: Callable[[Path], str | None]) -> None:
        """Refuse a SQLite job store whose file would vanish (serverless disk, tmpfs) or cannot be written."""
        directory = self.jobs_data_dir
        if not self.jobs_allow_ephemeral_store:
            if serverless:
                raise SettingsError(
                    "JOBS_STORE=sqlite on App Engine or Cloud Run would lose jobs: the instance's disk vanishes with "
                    "it. Set DATABASE_URL or JOBS_STORE=firestore (or JOBS_ALLOW_EPHEMERAL_STORE=true for a demo)"
                )
            kind = filesystem(directory)
            if kind in ("tmpfs", "ramfs"):
                raise SettingsError(
                    f"JOBS_DATA_DIR={directory} is on {kind}, which is emptied at reboot: jobs would be lost. "
                    "Choose a directory on disk (or JOBS_ALLOW_EPHEMERAL_STORE=true)"
                )
        existing = directory
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
            raise SettingsError(f"JOBS_DATA_DIR={directory} is not a writable directory")
