"""Resetting per-process state in a child after `fork()` (gunicorn's preload_app).

Threads do not survive a fork: an object that keeps threads (batch runners, call
threads) must forget them in the child and start new ones there when needed. Part of
`serving.kit`: model code that keeps threads or native pools uses it as the server does.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable


def reset_in_forked_child(method: Callable[[], None]) -> None:
    """Call the bound `method` in every child forked from now on, while its object lives.

    Only a weak reference is kept: registering must not keep the object (an app, say)
    alive for the rest of the process.
    """
    reference = weakref.WeakMethod(method)

    def after_in_child() -> None:
        bound = reference()
        if bound is not None:
            bound()

    os.register_at_fork(after_in_child=after_in_child)


def release_before_fork(method: Callable[[], None]) -> None:
    """Call the bound `method` in this process just before every fork, while its object lives.

    For state that must not cross a fork at all (a native library's thread pools): the
    parent lets go of it where its threads still exist, so no child inherits it. Only a
    weak reference is kept, as for `reset_in_forked_child`.
    """
    reference = weakref.WeakMethod(method)

    def before() -> None:
        bound = reference()
        if bound is not None:
            bound()

    os.register_at_fork(before=before)


def hold_across_fork(lock: threading.Lock) -> None:
    """Hold `lock` while the process forks, from now on: a fork waits for the section it guards to end.

    For a thread that must not be forked mid-way through a section (writing through
    another library's lock, say): the child then never starts with a lock held by a
    thread it does not have, and finds `lock` free.
    """
    os.register_at_fork(before=lock.acquire, after_in_parent=lock.release, after_in_child=lock.release)
