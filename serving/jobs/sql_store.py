"""The job store on SQLite (embedded default) and PostgreSQL (Cloud SQL), through SQLAlchemy Core.

Both engines share one schema and one set of statements; they differ only in how a claim
is made atomic:

- PostgreSQL: `UPDATE ... WHERE id = (SELECT ... FOR UPDATE SKIP LOCKED LIMIT 1) RETURNING`,
  so concurrent claimers skip each other's rows instead of waiting;
- SQLite: every write transaction starts with `BEGIN IMMEDIATE`, which takes the database's
  write lock up front, so two processes can never both read a row as claimable (WAL mode
  keeps readers unblocked meanwhile).

The schema is created on start and upgraded by numbered migrations recorded in
`jobs_schema`, under a lock (an advisory lock on PostgreSQL, the write lock on SQLite) so
that instances starting together do not race.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, RowMapping
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from serving.jobs.records import Job, JobStatus, WebhookState, dumps, stored_fields
from serving.jobs.store import Claim, IdempotencyConflict, StoreError

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

_EXHAUSTED = {
    "code": "attempts_exhausted",
    "message": "Gave up: every attempt ended with the process running the job stopping before it finished "
    "(crash, out of memory, kill or restart)",
}
_CANCELED = {"code": "canceled", "message": "Canceled by the client"}


def sqlite_url(path: Path) -> str:
    """The SQLAlchemy URL of a SQLite database file."""
    return f"sqlite+pysqlite:///{path}"


def normalise_database_url(url: str) -> str:
    """`postgres://` and `postgresql://` URLs with the psycopg 3 driver named explicitly."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


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
            self._write_lock = _WriterLock(Path(database + ".lock"))

    def _create_engine(self) -> Engine:
        if self.dialect == "sqlite":
            engine = sa.create_engine(self.url, connect_args={"timeout": 30})
            event.listen(engine, "connect", _sqlite_on_connect)
            event.listen(engine, "begin", _sqlite_on_begin)
            return engine
        return sa.create_engine(
            self.url, pool_pre_ping=True, pool_size=self._pool_size, max_overflow=self._pool_size, pool_recycle=1800
        )

    # --- lifecycle ---

    def prepare(self) -> None:
        if self._data_dir is not None:
            try:
                self._data_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create the job store's directory {self._data_dir}: {exc}") from exc
        with self._begin() as conn:
            if self.dialect == "postgresql":
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
                conn.execute(sa.insert(JOBS).values(**_row(job)))
            return job, True
        except IntegrityError as exc:
            if job.idempotency_key is None:
                raise StoreError(f"job store refused the new job: {_first_line(exc)}") from exc
        with self._read() as conn:
            row = conn.execute(sa.select(JOBS).where(JOBS.c.idempotency_key == job.idempotency_key)).mappings().first()
        if row is None:  # the other job was purged in between: try once more
            return self.create(job)
        existing = _job(row)
        if existing.request_hash != job.request_hash:
            raise IdempotencyConflict(existing)
        return existing, False

    def get(self, job_id: str) -> Job | None:
        with self._read() as conn:
            row = conn.execute(sa.select(JOBS).where(JOBS.c.id == job_id)).mappings().first()
        return _job(row) if row is not None else None

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
            sa.update(JOBS).where(condition).values(**_terminal_values(JobStatus.FAILED, None, _EXHAUSTED, now))
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
        return Claim(_job(row), token) if row is not None else None

    def claim(self, job_id: str, worker: str, lease_s: float, now: float) -> Claim | Job | None:
        with self._begin(durable=False) as conn:
            now = _locked_now(now)
            self._expire_exhausted(conn, now, job_id)
            token, values = self._claim_values(worker, lease_s, now)
            statement = sa.update(JOBS).where(JOBS.c.id == job_id, self._runnable(now)).values(**values)
            row = conn.execute(statement.returning(*JOBS.c)).mappings().first()
            if row is not None:
                return Claim(_job(row), token)
            current = conn.execute(sa.select(JOBS).where(JOBS.c.id == job_id)).mappings().first()
        return _job(current) if current is not None else None

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
                    .values(**_terminal_values(status, result, error, now))
                    .returning(*JOBS.c)
                )
                .mappings()
                .first()
            )
        return _job(row) if row is not None else None

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
                    .values(**_terminal_values(JobStatus.CANCELED, None, _CANCELED, now))
                    .returning(*JOBS.c)
                )
                .mappings()
                .first()
            )
            if row is not None:
                return _job(row), True
            current = conn.execute(sa.select(JOBS).where(JOBS.c.id == job_id)).mappings().first()
        return (_job(current), False) if current is not None else None

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
        return [_job(row) for row in rows]

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
        return _job(row) if row is not None else None

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


class _WriterLock:
    """Queues SQLite writers of every thread and process, in the kernel instead of SQLite.

    SQLite's busy handler retries a locked database after sleeps of up to 100 ms, so
    under contention some writers (a client's submit among them) wait seconds; flock()
    waiters are woken as soon as the lock is free. A thread lock in front, because one
    process's threads share the file descriptor and flock() does not tell them apart;
    the file is reopened after a fork, because a child shares its parent's.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._threads = threading.Lock()
        self._fd: int | None = None
        self._pid = 0

    def __enter__(self) -> None:
        self._threads.acquire()
        try:
            if self._fd is None or self._pid != os.getpid():
                self._path.parent.mkdir(parents=True, exist_ok=True)
                self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
                self._pid = os.getpid()
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._threads.release()
            raise

    def __exit__(self, *exc: object) -> None:
        try:
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._threads.release()


def _holds(claim: Claim) -> sa.ColumnElement[bool]:
    return sa.and_(
        JOBS.c.id == claim.job_id,
        JOBS.c.claim_token == claim.token,
        JOBS.c.status == JobStatus.RUNNING.value,
    )


def _terminal_values(status: JobStatus, result: Any, error: dict[str, Any] | None, now: float) -> dict[str, Any]:
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


def _row(job: Job) -> dict[str, Any]:
    return stored_fields(job)


def _job(row: RowMapping) -> Job:
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


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # SQLAlchemy's pysqlite driver starts transactions lazily and DEFERRED; take control so
    # that `_sqlite_on_begin` can open each transaction with the write lock held.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_on_begin(conn: Connection) -> None:
    # IMMEDIATE takes the write lock now, so no other process can change what this
    # transaction reads before it writes; reads need no lock at all in WAL mode.
    options = conn.get_execution_options()
    if options.get("serving_readonly", False):
        conn.exec_driver_sql("BEGIN")
        return
    # FULL: the commit is on disk before the client hears of it (an accepted job, a
    # result) and survives power loss, not only a crash. NORMAL (WAL: no fsync per
    # commit, still safe against any process crash) for claims and leases.
    conn.exec_driver_sql("PRAGMA synchronous=" + ("FULL" if options.get("serving_durable", True) else "NORMAL"))
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else exc.__class__.__name__
