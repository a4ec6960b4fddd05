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

The threads are daemon threads, so a call that never returns cannot block the process
from exiting (gunicorn's graceful shutdown, SIGTERM). They are created lazily, after
gunicorn forks its workers, and again in a forked child if the parent had any.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import math
import os
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar

from serving.errors import GatewayTimeout, ModelUnavailable, Overloaded

log = logging.getLogger("serving.timebudget")

T = TypeVar("T")
# Set where the caller already runs the model call on a thread of its own with its own
# deadline (the job runner, with JOBS_TIMEOUT_S): a second budget would only add a thread.
_CALLER_ENFORCES: contextvars.ContextVar[bool] = contextvars.ContextVar("serving_caller_enforces", default=False)


@contextlib.contextmanager
def caller_enforces_timeout() -> Iterator[None]:
    """Within this block, `TimeBudget.call` runs calls directly: the caller times them."""
    token = _CALLER_ENFORCES.set(True)
    try:
        yield
    finally:
        _CALLER_ENFORCES.reset(token)


_Task = tuple[Future[Any], Callable[[], Any]]


class _DaemonThreads:
    """Runs submitted calls on daemon threads, one idle thread per call or a new one."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._tasks: queue.SimpleQueue[_Task] = queue.SimpleQueue()
        self._idle = 0
        self._started = 0

    def submit(self, fn: Callable[[], T]) -> Future[T]:
        future: Future[T] = Future()
        with self._lock:
            if self._pid != os.getpid():  # forked: the parent's threads do not exist here
                self._reset()
            # Reserve a thread for this task: an idle one, else a new one. Every queued
            # task has its own thread, so a stuck call never delays the next one.
            if self._idle:
                self._idle -= 1
            else:
                self._started += 1
                threading.Thread(target=self._run, name=f"{self._name}-{self._started}", daemon=True).start()
            self._tasks.put((future, fn))
        return future

    def _run(self) -> None:
        tasks = self._tasks
        while True:
            future, fn = tasks.get()
            result: Any = None
            error: BaseException | None = None
            if future.set_running_or_notify_cancel():
                try:
                    result = fn()
                except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller, who decides
                    error = exc
            with self._lock:
                if tasks is not self._tasks:  # the pool was reset after a fork
                    return
                # Idle before the caller wakes: its next call reuses this thread.
                self._idle += 1
            if not future.cancelled():
                if error is not None:
                    future.set_exception(error)
                else:
                    future.set_result(result)
            del future, fn, result, error


class TimeBudget:
    """Runs model calls with a deadline; one per app, shared by every model."""

    def __init__(self, *, default_timeout_s: float, max_abandoned: int) -> None:
        self.default_timeout_s = default_timeout_s
        self.max_abandoned = max_abandoned
        self._threads = _DaemonThreads("model-call")
        self._lock = threading.Lock()
        self._abandoned: dict[str, int] = {}

    def timeout_for(self, model_timeout_s: float | None) -> float:
        """The budget of one call: the model's TIMEOUT_S, else the default (0: none)."""
        return model_timeout_s if model_timeout_s is not None else self.default_timeout_s

    def abandoned(self, model: str) -> int:
        """How many of `model`'s timed-out calls are still running."""
        with self._lock:
            return self._abandoned.get(model, 0)

    def degraded(self, model: str) -> bool:
        """True while `model` refuses new calls because too many are still running late."""
        return self.abandoned(model) >= self.max_abandoned

    def call(self, model: str, timeout_s: float | None, fn: Callable[[], T]) -> T:
        """`fn()`'s result if it returns within the budget; its exception if it raises.

        Raises `GatewayTimeout` (504) when it overruns, `ModelUnavailable` (503) when
        `model` is degraded, and `Overloaded` (503) when no thread could start it in time.
        """
        budget = self.timeout_for(timeout_s)
        if budget <= 0 or _CALLER_ENFORCES.get():
            return fn()
        if self.degraded(model):
            error = ModelUnavailable(
                f"Model {model} is degraded: earlier requests overran its {budget:g} s time budget "
                "and are still running; retry later",
                status="degraded",
            )
            error.headers["Retry-After"] = str(max(1, math.ceil(budget)))
            raise error
        # The caller's context (request id, trace) follows the call onto the thread.
        context = contextvars.copy_context()
        future = self._threads.submit(lambda: context.run(fn))
        try:
            return future.result(timeout=budget)
        except FutureTimeout:
            if future.cancel():
                raise Overloaded(f"No capacity to run model {model} within {budget:g} s; retry later") from None
            self._abandon(model, future)
            raise GatewayTimeout(
                f"Model {model} did not answer within its {budget:g} s time budget", timeout_s=budget
            ) from None

    def _abandon(self, model: str, future: Future[Any]) -> None:
        with self._lock:
            count = self._abandoned.get(model, 0) + 1
            self._abandoned[model] = count
        if count >= self.max_abandoned:
            log.warning("model %s degraded: %d timed-out calls still running", model, count, extra={"model": model})
        future.add_done_callback(lambda _: self._finished(model))

    def _finished(self, model: str) -> None:
        with self._lock:
            count = self._abandoned.get(model, 0) - 1
            self._abandoned[model] = max(count, 0)
        if count == self.max_abandoned - 1:
            log.info("model %s recovered: its timed-out calls have finished", model, extra={"model": model})
