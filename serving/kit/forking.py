"""Resetting per-process state in a child after `fork()` (gunicorn's preload_app).

Threads do not survive a fork: an object that keeps threads (batch runners, call
threads) must forget them in the child and start new ones there when needed. Part of
`serving.kit`: model code that keeps threads or native pools uses it as the server does.
"""

from __future__ import annotations

import os
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
