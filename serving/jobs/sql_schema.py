"""The job store's SQL schema: the `jobs` table, its numbered migrations, and rows <-> `Job`.

The schema is created on start and upgraded by numbered migrations recorded in
`jobs_schema`, under a lock (an advisory lock on PostgreSQL, the write lock on SQLite) so
that instances starting together do not race.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, RowMapping

from serving.jobs.records import Job, JobStatus, WebhookState, dumps, stored_fields

log = logging.getLogger("serving.jobs.store")

_metadata = sa.MetaData()

JOBS = sa.Table(
    "jobs",
    _metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("model", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("result", sa.Text),
    sa.Column("error", sa.Text),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("updated_at", sa.Double, nullable=False),
    sa.Column("started_at", sa.Double),
    sa.Column("finished_at", sa.Double),
    sa.Column("not_before", sa.Double, nullable=False, server_default="0"),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("max_attempts", sa.Integer, nullable=False),
    sa.Column("lease_until", sa.Double),
    sa.Column("claim_token", sa.String(32)),
    sa.Column("worker", sa.String(128)),
    sa.Column("idempotency_key", sa.String(255)),
    sa.Column("request_hash", sa.String(64)),
    sa.Column("request_id", sa.String(128)),
    sa.Column("webhook_url", sa.Text),
    sa.Column("webhook_state", sa.String(16)),
    sa.Column("webhook_attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("webhook_next_at", sa.Double),
    sa.Column("webhook_error", sa.Text),
    sa.Column("dispatched_at", sa.Double),
    sa.Column("owner", sa.String(64)),
    sa.Index("jobs_idempotency_key", "idempotency_key", unique=True),
    sa.Index("jobs_runnable", "status", "not_before"),
    sa.Index("jobs_leases", "status", "lease_until"),
    sa.Index("jobs_finished", "finished_at"),
    sa.Index("jobs_webhooks", "webhook_state", "webhook_next_at"),
)

SCHEMA = sa.Table(
    "jobs_schema",
    _metadata,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("applied_at", sa.Double, nullable=False),
)

# Any constant works: it names the lock that serialises schema upgrades across instances.
_PG_SCHEMA_LOCK = 7_240_724_001


def _migration_1(conn: Connection) -> None:
    JOBS.create(conn, checkfirst=True)


def _migration_2(conn: Connection) -> None:
    # A database made by step 1 of this release already has the column (step 1 creates
    # the table as it is now); one made by an older release gets it here.
    if "owner" not in {column["name"] for column in sa.inspect(conn).get_columns("jobs")}:
        conn.execute(sa.text("ALTER TABLE jobs ADD COLUMN owner VARCHAR(64)"))


# Append-only: a new column is a new numbered step (e.g. `ALTER TABLE jobs ADD COLUMN ...`
# with a default), never an edit of an old one, so every database reaches the same shape.
_MIGRATIONS: list[tuple[int, Callable[[Connection], None]]] = [(1, _migration_1), (2, _migration_2)]


def migrate(conn: Connection, dialect: str) -> None:
    """Create the schema or bring it up to date, inside the caller's write transaction."""
    if dialect == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_SCHEMA_LOCK})
    SCHEMA.create(conn, checkfirst=True)
    current = conn.execute(sa.select(sa.func.max(SCHEMA.c.version))).scalar() or 0
    for version, step in _MIGRATIONS:
        if version > current:
            step(conn)
            conn.execute(sa.insert(SCHEMA).values(version=version, applied_at=time.time()))
            log.info("job store schema upgraded to version %d", version)
    latest = _MIGRATIONS[-1][0]
    if current > latest:
        # A newer release migrated this database; its steps only add columns, so
        # this older code keeps working (e.g. during a rollback).
        log.warning("job store schema is at version %d, newer than this release's %d", current, latest)


def job_row(job: Job) -> dict[str, Any]:
    """The column values of `job`."""
    return stored_fields(job)


def job_from_row(row: RowMapping) -> Job:
    """The `Job` a row of `JOBS` holds."""
    return Job(
        id=row["id"],
        model=row["model"],
        status=JobStatus(row["status"]),
        payload=json.loads(row["payload"]),
        result=json.loads(row["result"]) if row["result"] is not None else None,
        error=json.loads(row["error"]) if row["error"] is not None else None,
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        not_before=row["not_before"],
        attempts=row["attempts"],
        max_attempts=row["max_attempts"],
        lease_until=row["lease_until"],
        claim_token=row["claim_token"],
        worker=row["worker"],
        idempotency_key=row["idempotency_key"],
        request_hash=row["request_hash"],
        request_id=row["request_id"],
        webhook_url=row["webhook_url"],
        webhook_state=WebhookState(row["webhook_state"]) if row["webhook_state"] else None,
        webhook_attempts=row["webhook_attempts"],
        webhook_next_at=row["webhook_next_at"],
        webhook_error=row["webhook_error"],
        dispatched_at=row["dispatched_at"],
        owner=row["owner"],
    )


def terminal_values(status: JobStatus, result: Any, error: dict[str, Any] | None, now: float) -> dict[str, Any]:
    """The column values that end a job in `status` (and make its webhook, if any, due now)."""
    return {
        "status": status.value,
        "result": dumps(result) if status is JobStatus.SUCCEEDED else None,
        "error": dumps(error) if error is not None else None,
        "finished_at": now,
        "updated_at": now,
        "claim_token": None,
        "lease_until": None,
        "webhook_state": sa.case((JOBS.c.webhook_url.is_(None), None), else_=WebhookState.PENDING.value),
        "webhook_next_at": sa.case((JOBS.c.webhook_url.is_(None), None), else_=now),
    }
