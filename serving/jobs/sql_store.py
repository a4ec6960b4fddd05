"""The job store on SQLite (embedded default) and PostgreSQL (Cloud SQL), through SQLAlchemy Core.

Both engines share one schema and one set of statements; they differ only in how a claim
is made atomic:

- PostgreSQL: `UPDATE ... WHERE id = (SELECT ... FOR UPDATE SKIP LOCKED LIMIT 1) RETURNING`,
  so concurrent claimers skip each other's rows instead of waiting;
- SQLite: every write transaction starts with `BEGIN IMMEDIATE`, which takes the database's
  write lock up front, so two processes can never both read a row as claimable (WAL mode
  keeps readers unblocked meanwhile).

This module holds the statements; sql_schema.py the table and its migrations, and
sql_engine.py the connections (URLs, SQLite's pragmas and writer lock).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from serving.jobs.records import Job, JobStatus, WebhookState
from serving.jobs.sql_engine import WriterLock, create_engine, normalise_database_url
from serving.jobs.sql_schema import JOBS, job_from_row, job_row, migrate, terminal_values
from serving.jobs.store import Claim, IdempotencyConflict, StoreError

log = logging.getLogger("serving.jobs.store")

_EXHAUSTED = {
    "code": "attempts_exhausted",
    "message": "Gave up: every attempt ended with the process running the job stopping before it finished "
    "(crash, out of memory, kill or restart)",
}
_CANCELED = {"code": "canceled", "message": "Canceled by the client"}


class SqlJobStore:
    """`JobStore` on SQLite or PostgreSQL; one per process, thread-safe."""

    def __init__(self, url: str, *, pool_size: int = 5, data_dir: Path | None = None) -> None:
        self.url = normalise_database_url(url)
        self._data_dir = data_dir
        self.dialect = sa.engine.make_url(self.url).get_backend_name()
        if self.dialect not in ("sqlite", "postgresql"):
            raise StoreError(f"unsupported database {self.dialect!r}: use PostgreSQL or SQLite")
        self._pool_size = pool_size
        self._engine = self._create_engine()
        self._pid = os.getpid()
        self._write_lock: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
        if self.dialect == "sqlite":
            database = sa.engine.make_url(self.url).database or ""
            self._write_lock = WriterLock(Path(database + ".lock"))

    def _create_engine(self) -> Engine:
        return create_engine(self.url, self.dialect, self._pool_size)

    # --- lifecycle ---

    def prepare(self) -> None:
        if self._data_dir is not None:
            try:
                self._data_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create the job store's directory {self._data_dir}: {exc}") from exc
        with self._begin() as conn:
            migrate(conn, self.dialect)

    def after_fork(self) -> None:
        if os.getpid() != self._pid:
            # Connections opened by the parent belong to it: forget them without closing
            # them (closing would end the parent's sessions too).
            self._engine.dispose(close=False)
            self._pid = os.getpid()

    def close(self) -> None:
        self._engine.dispose()

    @contextmanager
    def _begin(self, *, durable: bool = True) -> Iterator[Connection]:
        """A write transaction (on SQLite: holding the database's write lock).

        `durable=False` is for bookkeeping whose loss in a power cut is harmless (a
        claim or lease that vanishes only means the job runs again); on SQLite it skips
        the fsync. Accepted jobs and outcomes are always synced.
        """
        self.after_fork()
        with self._write_lock, self._transaction(readonly=False, durable=durable) as conn:
            yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        """A read-only transaction: never waits for writers (WAL on SQLite, MVCC on PostgreSQL)."""
        self.after_fork()
        with self._transaction(readonly=True) as conn:
            yield conn

    @contextmanager
    def _transaction(self, *, readonly: bool, durable: bool = True) -> Iterator[Connection]:
        try:
            with self._engine.connect() as conn:
                conn = conn.execution_options(serving_readonly=readonly, serving_durable=durable)
                with conn.begin():
                    yield conn
        except IntegrityError:
            raise
        except SQLAlchemyError as exc:
            raise StoreError(
                f"job store ({self.dialect}) failed: {exc.__class__.__name__}: {_first_line(exc)}"
            ) from exc

    # --- submit and read ---

    def create(self, job: Job) -> tuple[Job, bool]:
        try:
            with self._begin() as conn:
                conn.execute(sa.insert(JOBS).values(**job_row(job)))
            return job, True
        except IntegrityError as exc:
            if job.idempotency_key is None:
                raise StoreError(f"job store refused the new job: {_first_line(exc)}") from exc
        with self._read() as conn:
            row = conn.execute(sa.select(JOBS).where(JOBS.c.idempotency_key == job.idempotency_key)).mappings().first()
        if row is None:  # the other job was purged in between: try once more
            return self.create(job)
        existing = job_from_row(row)
        if existing.request_hash != job.request_hash:
            raise IdempotencyConflict(existing)
        return existing, False

    def get(self, job_id: str) -> Job | None:
        with self._read() as conn:
            row = conn.execute(sa.select(JOBS).where(JOBS.c.id == job_id)).mappings().first()
        return job_from_row(row) if row is not None else None

    # --- claims ---

    def _runnable(self, now: float) -> sa.ColumnElement[bool]:
        return sa.or_(
            sa.and_(JOBS.c.status == JobStatus.QUEUED.value, JOBS.c.not_before <= now),
            sa.and_(
                JOBS.c.status == JobStatus.RUNNING.value,
                JOBS.c.lease_until < now,
                JOBS.c.attempts < JOBS.c.max_attempts,
            ),
        )

    def _claim_values(self, worker: str, lease_s: float, now: float) -> tuple[str, dict[str, Any]]:
        token = secrets.token_hex(16)
        return token, {
            "status": JobStatus.RUNNING.value,
            "claim_token": token,
            "worker": worker[:128],
            "lease_until": now + lease_s,
            "attempts": JOBS.c.attempts + 1,
            "started_at": now,
            "updated_at": now,
        }

    def _expire_exhausted(self, conn: Connection, now: float, job_id: str | None = None) -> None:
        condition = self._exhausted(now)
        if job_id is not None:
            condition = sa.and_(condition, JOBS.c.id == job_id)
        ended = conn.execute(
            sa.update(JOBS).where(condition).values(**terminal_values(JobStatus.FAILED, None, _EXHAUSTED, now))
        ).rowcount
        if ended:
            log.warning("%d job(s) failed: attempts exhausted by stopped processes", ended)

    def _any(self, condition: sa.ColumnElement[bool]) -> bool:
        # Idle workers poll: a read finds out whether a write transaction is worth it.
        with self._read() as conn:
            return conn.execute(sa.select(JOBS.c.id).where(condition).limit(1)).first() is not None

    def _exhausted(self, now: float) -> sa.ColumnElement[bool]:
        return sa.and_(
            JOBS.c.status == JobStatus.RUNNING.value,
            JOBS.c.lease_until < now,
            JOBS.c.attempts >= JOBS.c.max_attempts,
        )

    def claim_next(self, worker: str, lease_s: float, now: float) -> Claim | None:
        if not self._any(sa.or_(self._runnable(now), self._exhausted(now))):
            return None
        with self._begin(durable=False) as conn:
            now = _locked_now(now)
            self._expire_exhausted(conn, now)
            candidate = (
                sa.select(JOBS.c.id)
                .where(self._runnable(now))
                .order_by(JOBS.c.created_at)
                .limit(1)
                .with_for_update(skip_locked=True)
                .scalar_subquery()
            )
            token, values = self._claim_values(worker, lease_s, now)
            statement = sa.update(JOBS).where(JOBS.c.id == candidate, self._runnable(now)).values(**values)
            row = conn.execute(statement.returning(*JOBS.c)).mappings().first()
        return Claim(job_from_row(row), token) if row is not None else None

    def claim(self, job_id: str, worker: str, lease_s: float, now: float) -> Claim | Job | None:
        with self._begin(durable=False) as conn:
            now = _locked_now(now)
            self._expire_exhausted(conn, now, job_id)
            token, values = self._claim_values(worker, lease_s, now)
            statement = sa.update(JOBS).where(JOBS.c.id == job_id, self._runnable(now)).values(**values)
            row = conn.execute(statement.returning(*JOBS.c)).mappings().first()
            if row is not None:
                return Claim(job_from_row(row), token)
            current = conn.execute(sa.select(JOBS).where(JOBS.c.id == job_id)).mappings().first()
        return job_from_row(current) if current is not None else None

    def heartbeat(self, claims: list[Claim], lease_s: float, now: float) -> set[str]:
        lost: set[str] = set()
        if not claims:
            return lost
        with self._begin(durable=False) as conn:
            for claim in claims:
                extended = conn.execute(
                    sa.update(JOBS)
                    .where(_holds(claim))
                    .values(lease_until=now + lease_s, updated_at=now)
                    .returning(JOBS.c.id)
                ).first()
                if extended is None:
                    lost.add(claim.job_id)
        return lost

    def finish(
        self, claim: Claim, status: JobStatus, result: Any, error: dict[str, Any] | None, now: float
    ) -> Job | None:
        with self._begin() as conn:
            now = _locked_now(now)
            row = (
                conn.execute(
                    sa.update(JOBS)
                    .where(_holds(claim))
                    .values(**terminal_values(status, result, error, now))
                    .returning(*JOBS.c)
                )
                .mappings()
                .first()
            )
        return job_from_row(row) if row is not None else None

    def release(self, claim: Claim, not_before: float, now: float) -> bool:
        with self._begin(durable=False) as conn:
            row = conn.execute(
                sa.update(JOBS)
                .where(_holds(claim))
                .values(
                    status=JobStatus.QUEUED.value,
                    claim_token=None,
                    lease_until=None,
                    worker=None,
                    attempts=JOBS.c.attempts - 1,
                    not_before=not_before,
                    updated_at=now,
                )
                .returning(JOBS.c.id)
            ).first()
        return row is not None

    def cancel(self, job_id: str, now: float) -> tuple[Job, bool] | None:
        with self._begin() as conn:
            now = _locked_now(now)
            row = (
                conn.execute(
                    sa.update(JOBS)
                    .where(JOBS.c.id == job_id, JOBS.c.status.in_([JobStatus.QUEUED.value, JobStatus.RUNNING.value]))
                    .values(**terminal_values(JobStatus.CANCELED, None, _CANCELED, now))
                    .returning(*JOBS.c)
                )
                .mappings()
                .first()
            )
            if row is not None:
                return job_from_row(row), True
            current = conn.execute(sa.select(JOBS).where(JOBS.c.id == job_id)).mappings().first()
        return (job_from_row(current), False) if current is not None else None

    # --- Cloud Tasks bookkeeping ---

    def mark_dispatched(self, job_id: str, now: float) -> None:
        with self._begin(durable=False) as conn:
            conn.execute(sa.update(JOBS).where(JOBS.c.id == job_id).values(dispatched_at=now))

    def undispatched(self, older_than: float, limit: int) -> list[Job]:
        with self._read() as conn:
            rows = (
                conn.execute(
                    sa.select(JOBS)
                    .where(
                        JOBS.c.status == JobStatus.QUEUED.value,
                        JOBS.c.dispatched_at.is_(None),
                        JOBS.c.created_at < older_than,
                    )
                    .order_by(JOBS.c.created_at)
                    .limit(limit)
                )
                .mappings()
                .all()
            )
        return [job_from_row(row) for row in rows]

    # --- webhooks ---

    def _webhook_due(self, now: float) -> sa.ColumnElement[bool]:
        return sa.and_(JOBS.c.webhook_state == WebhookState.PENDING.value, JOBS.c.webhook_next_at <= now)

    def claim_webhook(self, lease_s: float, now: float) -> Job | None:
        if not self._any(self._webhook_due(now)):
            return None
        with self._begin(durable=False) as conn:
            candidate = (
                sa.select(JOBS.c.id)
                .where(self._webhook_due(now))
                .order_by(JOBS.c.webhook_next_at)
                .limit(1)
                .with_for_update(skip_locked=True)
                .scalar_subquery()
            )
            return self._take_webhook(conn, JOBS.c.id == candidate, lease_s, now)

    def claim_webhook_for(self, job_id: str, lease_s: float, now: float) -> Job | None:
        with self._begin(durable=False) as conn:
            return self._take_webhook(conn, JOBS.c.id == job_id, lease_s, now)

    def _take_webhook(self, conn: Connection, which: sa.ColumnElement[bool], lease_s: float, now: float) -> Job | None:
        # The next-attempt time doubles as the delivery's lease: a deliverer that dies
        # leaves it in the past after `lease_s`, and another one retries.
        row = (
            conn.execute(
                sa.update(JOBS)
                .where(which, self._webhook_due(now))
                .values(webhook_next_at=now + lease_s, webhook_attempts=JOBS.c.webhook_attempts + 1)
                .returning(*JOBS.c)
            )
            .mappings()
            .first()
        )
        return job_from_row(row) if row is not None else None

    def finish_webhook(self, job_id: str, delivered: bool, error: str | None, retry_at: float | None) -> None:
        if delivered:
            values: dict[str, Any] = {"webhook_state": WebhookState.DELIVERED.value, "webhook_error": None}
        elif retry_at is None:
            values = {"webhook_state": WebhookState.FAILED.value, "webhook_error": error}
        else:
            values = {"webhook_next_at": retry_at, "webhook_error": error}
        with self._begin() as conn:
            conn.execute(
                sa.update(JOBS)
                .where(JOBS.c.id == job_id, JOBS.c.webhook_state == WebhookState.PENDING.value)
                .values(**values)
            )

    def purge(self, finished_before: float) -> int:
        with self._begin() as conn:
            return int(
                conn.execute(
                    sa.delete(JOBS).where(
                        JOBS.c.finished_at < finished_before,
                        sa.or_(JOBS.c.webhook_state.is_(None), JOBS.c.webhook_state != WebhookState.PENDING.value),
                    )
                ).rowcount
            )


def _locked_now(now: float) -> float:
    # The caller read its clock before waiting for the lock (SQLite's write lock can take
    # a while): times written under the lock must not predate the writes before them.
    return max(now, time.time())


def _holds(claim: Claim) -> sa.ColumnElement[bool]:
    return sa.and_(
        JOBS.c.id == claim.job_id,
        JOBS.c.claim_token == claim.token,
        JOBS.c.status == JobStatus.RUNNING.value,
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else exc.__class__.__name__
