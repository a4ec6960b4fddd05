"""A time budget for each model call: 504 when it overruns, without losing the worker.

Python cannot kill a thread, so a model call that overruns its budget cannot be stopped.
`TimeBudget.call` therefore runs the call on one of its own threads and waits at most the
model's `TIMEOUT_S` (or `PREDICT_TIMEOUT_S`): on time, the caller gets the result; late,
the caller gets `GatewayTimeout` (504) at once and the call is *abandoned*: it runs on to
its end on that thread and its result is dropped. The request thread is free again, so
gunicorn's worker keeps answering.

Abandoned calls still hold a thread and CPU, so they are bounded per model: once
`MAX_ABANDONED_CALLS` of one model's calls are still running, that model is *degraded*
and answers 503 with `Retry-After` without starting new calls, until they finish. One
stuck model never starves the others, and the number of threads stays bounded (request
threads plus, per model, the abandoned calls).

The job runner uses the same mechanism with the job's timeout (`TIMEOUT_S`, else
`JOBS_TIMEOUT_S`) and `degrade=False`: a job that overruns fails as `timeout` and its call
runs on, but jobs are bounded by the runner's slots (held until the call really ends),
not by degrading the model. A model call made inside a budgeted call (the job's own
prediction) runs directly: the outer deadline already bounds it.

The threads are daemon threads, so a call that never returns cannot block the process
from exiting (gunicorn's graceful shutdown, SIGTERM). They are created lazily, after
gunicorn forks its workers, and again in a forked child if the parent had any.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import math
import threading
from collections.abc import Callable
from typing import Any, TypeVar, cast

from serving.errors import GatewayTimeout, ModelNotServing
from serving.kit.forking import reset_in_forked_child

log = logging.getLogger("serving.runtime.timebudget")

T = TypeVar("T")
# True on a call thread while it runs a budgeted call: calls nested in it run directly.
_WITHIN_BUDGET: contextvars.ContextVar[bool] = contextvars.ContextVar("serving_within_budget", default=False)


def _nothing() -> None:
    pass


class _CallThread:
    """A daemon thread that runs one handed-over call at a time.

    The hand-over is two bare locks (a C call each way, the cheapest signal between
    threads): `start` is released to run the call, `done` when it has finished. A
    `Future` + `SimpleQueue` version measured about a quarter of a trivial model's
    request in CPU (Condition objects, a lock allocated per wait).
    """

    __slots__ = ("_done", "_start", "error", "finished", "fn", "late", "result")

    def __init__(self, pool: _CallThreads, name: str) -> None:
        self._start = threading.Lock()
        self._start.acquire()
        self._done = threading.Lock()
        self._done.acquire()
        self.fn: Callable[[], Any] | None = None
        self.result: Any = None
        self.error: BaseException | None = None
        self.finished = False
        # Set when the caller gave up: called with this thread once the call ends.
        self.late: Callable[[], None] | None = None
        threading.Thread(target=self._loop, args=(pool,), name=name, daemon=True).start()

    def run(self, fn: Callable[[], Any]) -> None:
        """Start `fn` on this thread; the caller then `wait()`s."""
        self.fn = fn
        self.finished = False
        self._start.release()

    def wait(self, timeout_s: float) -> bool:
        """True when the call finished within `timeout_s`."""
        return self._done.acquire(timeout=timeout_s)

    def _loop(self, pool: _CallThreads) -> None:
        while True:
            self._start.acquire()
            fn, self.fn = self.fn, None
            try:
                self.result = fn() if fn is not None else None
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller, who decides
                self.error = exc
            del fn
            if pool.finish(self):
                self._done.release()


class _CallThreads:
    """Long-lived call threads: an idle one per call, or a new one when all are busy.

    Every call gets a thread at once, so a stuck call never delays the next one; a
    thread whose call was abandoned rejoins the idle ones when that call ends. Idle
    threads are kept: their number is the process's peak of concurrent model calls.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._lock = threading.Lock()
        self._idle: list[_CallThread] = []
        self._started = 0
        # Threads do not survive fork(): a child (gunicorn's workers, after preload_app)
        # starts with none.
        reset_in_forked_child(self._forget)

    def _forget(self) -> None:
        self._lock = threading.Lock()
        self._idle = []

    def take(self) -> _CallThread:
        """An idle thread, or a new one; the caller hands it one call and waits."""
        try:
            return self._idle.pop()  # atomic under the GIL: no lock on the hot path
        except IndexError:
            pass
        with self._lock:
            self._started += 1
            name = f"{self._name}-{self._started}"
        return _CallThread(self, name)

    def give_back(self, thread: _CallThread) -> None:
        """`thread`'s caller has taken its outcome: the thread is idle again."""
        thread.result = thread.error = None
        self._idle.append(thread)

    def abandon(self, thread: _CallThread, late: Callable[[], None]) -> bool:
        """The caller stops waiting; `late()` runs when the call ends.

        False when the call finished just in time: the caller takes its outcome after all.
        """
        with self._lock:
            if thread.finished:
                return False
            thread.late = late
            return True

    def finish(self, thread: _CallThread) -> bool:
        """On `thread`, its call has ended: True when a caller still waits for it."""
        with self._lock:
            thread.finished = True
            late, thread.late = thread.late, None
        if late is None:
            return True
        # Nobody waits for this outcome: drop it, report, and rejoin the idle threads.
        thread.result = thread.error = None
        try:
            late()
        finally:
            self._idle.append(thread)
        return False


class TimeBudget:
    """Runs model calls with a deadline; one per app, shared by every model."""

    def __init__(self, *, default_timeout_s: float, max_abandoned: int) -> None:
        self.default_timeout_s = default_timeout_s
        self.max_abandoned = max_abandoned
        self._threads = _CallThreads("model-call")
        self._lock = threading.Lock()
        self._abandoned: dict[str, int] = {}

    def timeout_for(self, model_timeout_s: float | None) -> float:
        """The budget of one call: the model's TIMEOUT_S, else the default (0: none)."""
        return model_timeout_s if model_timeout_s is not None else self.default_timeout_s

    def abandoned(self, model: str) -> int:
        """How many of `model`'s timed-out calls are still running."""
        return self._abandoned.get(model, 0)  # one dict read: no lock needed

    def degraded(self, model: str) -> bool:
        """True while `model` refuses new calls because too many are still running late."""
        return self.abandoned(model) >= self.max_abandoned

    def call(self, model: str, timeout_s: float | None, fn: Callable[[], T], *, degrade: bool = True) -> T:
        """`fn()`'s result if it returns within the budget; its exception if it raises.

        Raises `GatewayTimeout` (504) when it overruns and, with `degrade`, counts the
        abandoned call toward `model`'s degradation and raises `ModelNotServing` (503)
        while `model` is degraded. Without `degrade` the caller bounds its overruns itself.
        """
        budget = self.timeout_for(timeout_s)
        if budget <= 0 or _WITHIN_BUDGET.get():
            return fn()
        if degrade and self.degraded(model):
            error = ModelNotServing(
                f"Model {model} is degraded: earlier requests overran its {budget:g} s time budget "
                "and are still running; retry later",
                status="degraded",
            )
            error.headers["Retry-After"] = str(max(1, math.ceil(budget)))
            raise error
        # The caller's context (request id, trace) follows the call onto the thread.
        context = contextvars.copy_context()
        context.run(_WITHIN_BUDGET.set, True)
        thread = self._threads.take()
        thread.run(functools.partial(context.run, fn))
        late = (lambda: self._finished(model)) if degrade else _nothing
        if not thread.wait(budget) and self._threads.abandon(thread, late):
            if degrade:
                self._abandon(model)
            raise GatewayTimeout(f"Model {model} did not answer within its {budget:g} s time budget", timeout_s=budget)
        result, failure = thread.result, thread.error
        self._threads.give_back(thread)
        if failure is not None:
            try:
                raise failure
            finally:
                del failure  # no reference cycle through the traceback
        return cast(T, result)

    def _abandon(self, model: str) -> None:
        with self._lock:
            count = self._abandoned.get(model, 0) + 1
            self._abandoned[model] = count
        if count >= self.max_abandoned:
            log.warning("model %s degraded: %d timed-out calls still running", model, count, extra={"model": model})

    def _finished(self, model: str) -> None:
        with self._lock:
            count = self._abandoned.get(model, 0) - 1
            self._abandoned[model] = max(count, 0)
        if count == self.max_abandoned - 1:
            log.info("model %s recovered: its timed-out calls have finished", model, extra={"model": model})
