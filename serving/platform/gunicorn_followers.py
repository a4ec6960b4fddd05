"""gunicorn's gthread worker without the per-request hand-off: the request threads wait on the connections themselves.

gthread splits every request between two threads. Its main loop polls the kept-alive
connections; when one is readable it submits it to a thread pool (a lock, a queue, a
futex wake-up); the pool thread answers the request, then hands the connection back
through a pipe that wakes the main loop, which registers it with its poller again. Per
request that is two thread switches, a pipe write and read, and four poller calls, all
outside the app: under load (bench/profiles/XXXModel.md) the larger part of a worker's
CPU for a small request.

`FollowerThreadWorker` keeps gthread's request handling, its main loop for accepting,
time-outs and stopping, and `BalancedThreadWorker`'s spreading of connections, and
changes the hand-off. Its `threads` request threads wait on one shared `epoll` where
every open connection is registered with `EPOLLONESHOT`: the kernel gives a readable
connection to exactly one waiting thread, which answers the request and re-arms the
connection for the next one (the leader/followers pattern). Per request that is one
`epoll_wait` and one `epoll_ctl`, on the thread that answers it; the main loop wakes
only to accept and to close idle connections.

Kept from gthread, by calling its code: parsing, `handle_request`, `max_requests`, the
keep-alive timeout (`keepalive`), the connection limit (`worker_connections`), the linger
of kept-alive connections at a graceful stop (`STOP_KEEPALIVE_LINGER`, answering a request
already on its way with `Connection: close`) and `graceful_timeout`. A new connection is
waited on by the kernel, not by a thread, until its first bytes arrive.

Linux only (`epoll`, as on App Engine and Cloud Run); gunicorn.conf.py falls back to
`BalancedThreadWorker` elsewhere. Hand-written because gunicorn has no worker of this
kind; bench/NOTES.md has the measurements that made the case.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
import time
from typing import Any

from gunicorn.workers.base import Worker  # type: ignore[import-untyped]
from gunicorn.workers.gthread import STOP_KEEPALIVE_LINGER  # type: ignore[import-untyped]

from serving.platform.gunicorn_worker import BalancedThreadWorker

_READABLE_ONCE = select.EPOLLIN | select.EPOLLONESHOT
# How often the main loop looks for idle connections past their keep-alive time (gthread
# keeps them in order of expiry; here they are scanned, so not at every wake-up).
_SWEEP_EVERY_S = 0.5


class FollowerThreadWorker(BalancedThreadWorker):
    """gthread's worker whose request threads take readable connections from a shared `epoll` themselves."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lock = threading.Lock()
        # Open connections by file descriptor; a connection a thread is answering is `busy`.
        self._open: dict[int, Any] = {}
        self._epoll: Any = None
        self._wake_r = self._wake_w = -1
        self._followers: list[threading.Thread] = []
        self._next_sweep = 0.0

    # gthread counts connections in `nr_conns` (its accept adds one); here the count is the
    # table of open connections, which the request threads change too.
    @property
    def nr_conns(self) -> int:
        return len(self._open) if hasattr(self, "_open") else 0

    @nr_conns.setter
    def nr_conns(self, _value: int) -> None:
        """Ignored: gthread's own bookkeeping, replaced by the table of open connections."""

    def get_thread_pool(self) -> _NoPool:
        """No pool: the request threads are started by `run`."""
        return _NoPool()

    def init_process(self) -> None:
        """An `epoll` for the connections and a pipe that wakes every request thread at the end."""
        self._epoll = select.epoll()
        self._wake_r, self._wake_w = os.pipe()
        # Level-triggered, never re-armed: once written, every waiting thread sees it.
        self._epoll.register(self._wake_r, select.EPOLLIN)
        super().init_process()

    def handle_quit(self, sig: Any, frame: Any) -> None:
        """A quick stop (SIGQUIT, SIGINT): gunicorn's, without gthread's pool to shut down."""
        Worker.handle_quit(self, sig, frame)

    def enqueue_req(self, conn: Any) -> None:
        """A new connection (from gthread's `accept`): registered for the request threads, not given to one."""
        conn.busy = False
        conn.timeout = time.monotonic() + self.cfg.keepalive
        fd = conn.sock.fileno()
        with self._lock:
            self._open[fd] = conn
        self._publish()
        self._epoll.register(fd, _READABLE_ONCE)

    def run(self) -> None:
        """Start the request threads, then run the main loop: accept, close idle connections, stop."""
        self._followers = [
            threading.Thread(target=self._follow, name=f"request-{n}", daemon=True) for n in range(self.cfg.threads)
        ]
        for thread in self._followers:
            thread.start()
        try:
            super().run()
        finally:
            # gthread's loop waited up to graceful_timeout for the connections to end; a
            # request still running now is overdue, so the threads get a second in all.
            os.write(self._wake_w, b"x")
            deadline = time.monotonic() + 1.0
            for thread in self._followers:
                thread.join(max(deadline - time.monotonic(), 0.0))
            self._epoll.close()
            os.close(self._wake_r)
            os.close(self._wake_w)

    # --- the request threads ---

    def _follow(self) -> None:
        """One request thread: wait for a readable connection, answer it, re-arm it; until woken to end."""
        while True:
            try:
                events = self._epoll.poll(-1, 1)
            except InterruptedError:
                continue
            except (OSError, ValueError):
                return  # the epoll was closed: the worker is ending
            for fd, _ in events:
                if fd == self._wake_r:
                    return
                conn = self._take(fd)
                if conn is not None:
                    try:
                        self._serve(fd, conn)
                    except Exception:  # a thread that dies would serve nothing more
                        self.log.exception("request thread: connection failed")
                        self._drop(fd, conn)
                        conn.close()

    def _take(self, fd: int) -> Any:
        """The open connection on `fd`, marked busy; None if it was closed (or is served) meanwhile."""
        with self._lock:
            conn = self._open.get(fd)
            if conn is None or conn.busy:
                return None
            conn.busy = True
            return conn

    def _serve(self, fd: int, conn: Any) -> None:
        """Answer the requests waiting on `conn`, then re-arm it, or forget it if it ended."""
        result = self.handle(conn)
        # Bytes read ahead (a pipelined request) no longer make the socket readable.
        while result is True and conn.parser.unreader.buf.getvalue():
            result = self.handle(conn)
        if result is True or (result is not False and self.alive):  # kept alive, or (gthread's
            # `_DEFER`) a new connection whose first bytes are late: wait for them in epoll
            conn.timeout = time.monotonic() + self.cfg.keepalive
            if not self.alive:
                conn.timeout = min(conn.timeout, time.monotonic() + STOP_KEEPALIVE_LINGER)
            conn.busy = False
            self._epoll.modify(fd, _READABLE_ONCE)
            return
        # Ended. `BalancedThreadWorker.handle` closed it (a False result) or it is closed here;
        # a closed descriptor leaves the epoll by itself.
        self._drop(fd, conn)
        if result is not False:
            conn.close()

    def _drop(self, fd: int, conn: Any) -> None:
        """Forget `conn`, unless its descriptor number was reused by a newer connection already."""
        with self._lock:
            if self._open.get(fd) is conn:
                del self._open[fd]
        self._publish()

    def _publish(self) -> None:
        self._table[self._slot + 1] = len(self._open)

    # --- the main loop's share (gthread's `run` calls these) ---

    def murder_keepalived(self, force: bool = False) -> None:
        """Close idle connections past their keep-alive time (every one when `force`)."""
        now = time.monotonic()
        if not force and now < self._next_sweep:
            return
        self._next_sweep = now + _SWEEP_EVERY_S
        with self._lock:
            idle = [(fd, c) for fd, c in self._open.items() if not c.busy and (force or c.timeout <= now)]
            for fd, _ in idle:
                del self._open[fd]
        for fd, conn in idle:
            with contextlib.suppress(OSError, ValueError):
                self._epoll.unregister(fd)
            conn.close()
        if idle:
            self._publish()

    def murder_pending(self) -> None:
        """Nothing: a connection waiting for its first bytes is idle and `murder_keepalived`'s."""

    def _cap_keepalive(self, deadline: float) -> None:
        """A graceful stop: idle connections stay open until `deadline` at the latest."""
        self._next_sweep = 0.0
        with self._lock:
            for conn in self._open.values():
                conn.timeout = min(conn.timeout, deadline)

    def wait_for_and_dispatch_events(self, timeout: float) -> None:
        """The main loop's wait, short enough to close idle connections on time while stopping."""
        if not self.alive:
            timeout = min(timeout, _SWEEP_EVERY_S)
            self._next_sweep = 0.0
        super().wait_for_and_dispatch_events(timeout)


class _NoPool:
    """What gthread's stop calls on its thread pool (`shutdown`); the request threads end with `run`."""

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        return None
