"""Connecting to the job store's database: URLs, engines, and how SQLite writers take turns.

PostgreSQL gets a pooled engine that survives dropped connections. SQLite gets WAL mode
and transactions that start with `BEGIN IMMEDIATE` (so two processes can never both read
a row as claimable), and its writers queue on an flock()ed file (`WriterLock`).
"""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine


def sqlite_url(path: Path) -> str:
    """The SQLAlchemy URL of a SQLite database file."""
    return f"sqlite+pysqlite:///{path}"


def normalise_database_url(url: str) -> str:
    """`postgres://` and `postgresql://` URLs with the psycopg 3 driver named explicitly."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def create_engine(url: str, dialect: str, pool_size: int) -> Engine:
    """The SQLAlchemy engine of `url` (SQLite or PostgreSQL), set up for the job store."""
    if dialect == "sqlite":
        engine = sa.create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
        return engine
    return sa.create_engine(url, pool_pre_ping=True, pool_size=pool_size, max_overflow=pool_size, pool_recycle=1800)


class WriterLock:
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
