"""gunicorn's gthread worker, with connections spread evenly over the worker processes.

Every gthread worker polls the one listening socket and accepts whatever arrives, busy
or not (benoitc/gunicorn#3433). Connections are kept alive, so where they land decides
where their requests run for as long as they stay open: measured here with 2 workers of
8 threads and 16 keep-alive clients, splits from 8/8 to 14/2 happened run to run, and
the lopsided ones served a quarter fewer requests, one process queueing while the other
idled. Google's front end also keeps few, long-lived connections to an instance.

`BalancedThreadWorker` changes one thing: the workers publish how many connections each
holds in a small table of shared memory (mapped before gunicorn forks them), and a
worker that holds more than a sibling leaves a new connection to it for `DEFER_S`, by not
listening for that long. The sibling, woken by the same connection, takes it; if it does
not (it is stuck, or slower to wake), the deferring worker accepts the connection itself
when the time is up. So a connection waits at most `DEFER_S` longer than before and is
never refused; when the workers hold equal numbers, whoever wakes first accepts at once.
With one worker nothing changes.

It also closes a connection that ends on the request's thread, not on the worker's main
loop (see `handle`), skips gthread's drain of a body the application read to its end
(`_keepalive_after`), and its responses send the headers and a small body in one `sendall`
(serving/platform/gunicorn_response.py).

gunicorn.conf.py selects it with `worker_class`; all the rest (keep-alive, graceful
shutdown, timeouts) is gthread's own.
"""

from __future__ import annotations

import mmap
import os
import signal
import time
from typing import Any

from gunicorn.http.body import LengthReader  # type: ignore[import-untyped]
from gunicorn.workers.gthread import ThreadWorker  # type: ignore[import-untyped]

from serving.platform.gunicorn_config import ResolvedConfig
from serving.platform.gunicorn_response import use_single_send

# Slots of (pid, connections) as C ints. A worker takes the slot of its gunicorn age
# (a number the master counts up for each worker it starts), so a replacement worker
# never shares a slot with a live one unless 64 workers run at once.
_SLOTS = 64
# Anonymous shared memory: created when gunicorn's master imports this class, before any
# fork, and inherited by every worker; no file, so it works on read-only filesystems.
_TABLE = mmap.mmap(-1, _SLOTS * 2 * 4)


class BalancedThreadWorker(ThreadWorker):  # type: ignore[misc]  # gunicorn is untyped
    """gthread, except that a worker holding more connections than a sibling lets it accept first."""

    # Long enough for a sibling woken by the same connection to accept it, short enough
    # to be lost in a request's latency when it does not.
    DEFER_S = 0.01

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deferring = False
        self._defer_until = 0.0
        self._table = memoryview(_TABLE).cast("i")
        self._slot = 2 * (self.age % _SLOTS)

    def init_process(self) -> None:
        """gthread's, in a worker whose responses send headers and a small body at once (gunicorn_response.py).

        Its settings are read once, here (gunicorn_config.py): a request reads some twenty.
        """
        self.cfg: Any = ResolvedConfig(self.cfg)
        use_single_send()
        super().init_process()

    def run(self) -> None:
        """gthread's loop, with this worker's slot in the shared table claimed, then freed."""
        self._table[self._slot + 1] = 0
        self._table[self._slot] = os.getpid()
        try:
            super().run()
        finally:
            self._table[self._slot] = 0

    def a_sibling_holds_fewer(self) -> bool:
        """True when another live worker of this server holds fewer connections than this one."""
        mine, pid = self.nr_conns, os.getpid()
        table = self._table
        for slot in range(0, len(table), 2):
            other = table[slot]
            if other and other != pid and table[slot + 1] < mine:
                try:
                    os.kill(other, 0)  # a worker killed outright never cleared its slot
                except ProcessLookupError:
                    table[slot] = 0
                    continue
                except PermissionError:
                    pass  # alive, under another user: still a sibling
                return True
        return False

    def accept(self, listener: Any) -> None:
        """Accept a connection, unless a sibling holding fewer should have it."""
        if self.cfg.workers > 1 and self.a_sibling_holds_fewer():
            if not self._deferring:
                self._deferring = True
                self._defer_until = time.monotonic() + self.DEFER_S
                super().set_accept_enabled(False)
            return
        super().accept(listener)
        self._table[self._slot + 1] = self.nr_conns

    def set_accept_enabled(self, enabled: bool) -> None:
        """gthread's, except that listening stays off while a connection is left to a sibling."""
        if enabled and self._deferring:
            return
        super().set_accept_enabled(enabled)

    def handle(self, conn: Any) -> Any:
        """gthread's, except that a connection it will close is closed here, on this thread.

        gthread closes it later on the worker's main loop, with a lingering close (RFC 9112
        section 9.6) that waits up to 2 s for the client to close its side. A client that
        keeps its connection open after the answer (a stalled body answered 408 does) so
        froze the whole loop, accepting and every kept-alive connection, for 2 s each:
        16 of them, 5 s of /healthz not answering. Here the linger costs this thread only.
        """
        result = super().handle(conn)
        if result is False:
            conn.close(graceful=True)
            conn.close = _already_closed  # the main loop's close is then a no-op
        return result

    def _keepalive_after(self, conn: Any, keepalive: bool) -> bool:
        """gthread's, without its drain when the request's body was read to its last byte.

        gthread drains what the application left of a body before reusing the connection,
        under a deadline: the socket's timeout is read, set and set back (two `fcntl` calls)
        around a read that finds nothing. After an app that read its whole body, as this one
        does, that was 6.7% of a small request's Python time (bench/NOTES.md).
        """
        if keepalive and _body_read_to_its_end(conn.parser.mesg):
            return True
        return bool(super()._keepalive_after(conn, keepalive))

    def wait_for_and_dispatch_events(self, timeout: float) -> None:
        """gthread's event loop step; publishes this worker's count, ends deferrals on time."""
        self._table[self._slot + 1] = self.nr_conns  # connections also end in this loop
        if self._deferring:
            remaining = self._defer_until - time.monotonic()
            if remaining <= 0:
                self._deferring = False
                # No sibling took it: accept it here (gthread's accept ignores EAGAIN when
                # a sibling did), and listen again before waiting: gthread's own loop
                # would only re-enable listening after the wait below, up to a second on.
                for listener in self.sockets:
                    super().accept(listener)
                self._table[self._slot + 1] = self.nr_conns
                super().set_accept_enabled(self.nr_conns < self.worker_connections)
            else:
                timeout = min(timeout, remaining)
        super().wait_for_and_dispatch_events(timeout)


def _body_read_to_its_end(message: Any) -> bool:
    """True when nothing of `message`'s body is left to drain: a declared length read whole."""
    body = getattr(message, "body", None)
    return (
        body is not None
        and body.failed is False
        and isinstance(body.reader, LengthReader)
        and body.reader.length == 0
        and body.buf.tell() == 0
    )


def _already_closed(graceful: bool = False) -> None:
    """`TConn.close` of a connection `BalancedThreadWorker.handle` has closed already."""


# The master's stop signals: SIGTERM (graceful stop), SIGQUIT and SIGINT (quick stop).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGQUIT, signal.SIGINT)


def ignore_stop_signals() -> None:
    """Make an exiting worker deaf to the master's stop signals (gunicorn.conf.py's `worker_exit` calls it first).

    A worker that leaves (recycled by `max_requests`, or stopping) stays in the master's
    table until it is reaped, so a stop arriving meanwhile signals it again. Its handlers
    are gunicorn's: SIGQUIT's raises `SystemExit` inside the exit hook, cutting short the
    writing of queued log entries and the closing of ONNX models; and once the interpreter
    finalizes, CPython puts every handler Python installed back to the default, so a late
    SIGTERM killed the worker outright ("Worker (pid:...) was sent SIGTERM!", skipping
    exit handlers; seen in CI). An ignored signal stays ignored through finalization, and
    the master still ends a worker that overstays with SIGKILL after `graceful_timeout`.
    """
    for number in STOP_SIGNALS:
        signal.signal(number, signal.SIG_IGN)
