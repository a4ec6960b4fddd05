"""The follower worker's bookkeeping, on a stand-in for the worker (no gunicorn, no sockets)."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

from serving.platform.gunicorn_followers import FollowerThreadWorker

WAKE = 99


class _Conn:
    def __init__(self) -> None:
        self.busy = False
        self.closed = 0

    def close(self, graceful: bool = False) -> None:
        self.closed += 1


def _worker(events: list[list[tuple[int, int]]], open_: dict[int, Any]) -> Any:
    """What `_follow` and `_drop` use of the worker: its epoll, table, lock, log."""
    logged: list[str] = []
    worker = SimpleNamespace(
        _epoll=SimpleNamespace(poll=lambda timeout, most: events.pop(0)),
        _wake_r=WAKE,
        _open=open_,
        _lock=threading.Lock(),
        _table=[0, 0],
        _slot=0,
        log=SimpleNamespace(exception=lambda message, *args: logged.append(message % args if args else message)),
        logged=logged,
    )
    for name in ("_take", "_drop", "_publish"):
        setattr(worker, name, getattr(FollowerThreadWorker, name).__get__(worker))
    return worker


def test_a_connection_that_fails_is_closed_and_the_thread_goes_on() -> None:
    failing, next_one = _Conn(), _Conn()
    worker = _worker([[(5, 1)], [(6, 1)], [(WAKE, 1)]], {5: failing, 6: next_one})
    served = []

    def serve(fd: int, conn: Any) -> None:
        if fd == 5:
            raise OSError("epoll_ctl failed")
        served.append(fd)

    worker._serve = serve
    FollowerThreadWorker._follow(worker)  # returns at the wake-up, not at the failure

    assert served == [6]
    assert failing.closed == 1
    assert 5 not in worker._open
    assert worker.logged == ["request thread: connection failed"]


def test_a_connection_is_taken_by_one_thread_only() -> None:
    conn = _Conn()
    worker = _worker([], {5: conn})
    assert worker._take(5) is conn
    assert worker._take(5) is None  # busy: its owner re-arms it
    assert worker._take(7) is None  # closed meanwhile


def test_dropping_a_connection_spares_a_newer_one_on_the_same_descriptor() -> None:
    old, new = _Conn(), _Conn()
    worker = _worker([], {5: new})  # the descriptor was reused before the old one was forgotten
    worker._drop(5, old)
    assert worker._open == {5: new}
    worker._drop(5, new)
    assert worker._open == {}
    assert worker._table[1] == 0
