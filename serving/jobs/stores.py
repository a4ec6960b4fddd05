"""Which job store this deployment uses, built from the settings (`JOBS_STORE`, `DATABASE_URL`, ...).

`build_store()` resolves `JOBS_STORE=auto`, lets serving/config/jobs.py refuse a store or
dispatcher that would lose jobs, and opens the store (lazily importing its driver).
"""

from __future__ import annotations

import logging

from serving.config.settings import Settings
from serving.jobs.mounts import filesystem_type
from serving.jobs.store import JobStore, StoreError

log = logging.getLogger("serving.jobs")

SQLITE_FILE = "jobs.sqlite"


def resolve_store_kind(settings: Settings) -> str:
    """The store `JOBS_STORE` stands for here: sqlite, postgresql, firestore or none."""
    if settings.jobs_store != "auto":
        return settings.jobs_store
    if settings.database_url:
        return "postgresql"
    if settings.platform.on_google_cloud and not settings.jobs_allow_ephemeral_store:
        return "none"
    return "sqlite"


def build_store(settings: Settings) -> JobStore | None:
    """The job store the settings ask for, after checking that it keeps jobs."""
    kind = resolve_store_kind(settings)
    # Google Cloud's instances throw their disk away (dev_appserver.py's machine keeps it).
    serverless = settings.platform.on_google_cloud
    settings.check_dispatcher(kind, serverless=serverless, on_app_engine=settings.platform.is_app_engine)
    if kind == "none":
        if settings.jobs_store == "auto":
            log.warning("%s", settings.jobs_disabled_reason())
        return None
    if kind == "postgresql":
        from serving.jobs.sql_store import SqlJobStore

        return settings.open_database(SqlJobStore, StoreError)
    if kind == "firestore":
        from serving.jobs.firestore_store import FirestoreJobStore

        return FirestoreJobStore(
            project=settings.jobs_firestore_project or None,
            database=settings.jobs_firestore_database,
            collection=settings.jobs_firestore_collection,
        )
    from serving.jobs.sql_engine import sqlite_url
    from serving.jobs.sql_store import SqlJobStore

    settings.check_sqlite_dir(serverless=serverless, filesystem=filesystem_type)
    directory = settings.jobs_data_dir
    return SqlJobStore(sqlite_url(directory / SQLITE_FILE), data_dir=directory)
