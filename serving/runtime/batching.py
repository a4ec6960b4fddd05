"""Adaptive micro-batching: concurrent requests to one model run as one `predict_batch`.

In each worker process, every model whose handler defines `predict_batch` gets a
`Batcher`. A request that finds the model idle with nobody queued runs at once, on its
own thread, exactly as it would without batching: a lone client pays nothing. Requests
that arrive while the model is busy queue up. When the model is free, a runner thread
takes up to `max_batch_size` of them and runs them as one `predict_batch`; each request
gets its own result or its own error (`Inference.predict_many` retries item by item when
the batch call fails, so one bad item fails only itself). A full queue answers 503
`Overloaded` with `Retry-After` instead of growing without bound.

Batches therefore grow with load by themselves: under no load every call is single, under
heavy load a batch holds everything that arrived during the previous model call. The
runner waits for a batch to fill (at most `max_latency_ms` after its oldest request
arrived) only when requests for the model are known to be on their way — announced by
`announce()` once their route found the model and not yet submitted (the route does this
through `Inference.arriving`) — and never longer than a model call has been taking,
since waiting longer than a call costs more than making another one.

A `Batcher` knows nothing of HTTP nor of how a model is called: `Inference` owns the
`Batchers` and is the `ModelCalls` each batcher calls back (one payload, a list of them).

Threads do not survive `fork()`: with gunicorn's `preload_app` the app is built in the
master and forked, so runner threads are started lazily, in the process that needs them,
and a batcher created before a fork is replaced in the child.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Protocol

from serving.errors import ApiError, InternalError, Overloaded
from serving.kit.forking import reset_in_forked_child
from serving.runtime.handlers import BatchPolicy
from serving.runtime.registry import ModelRuntime

log = logging.getLogger("serving.runtime.batching")

# Weight of the newest model call in the running average of call durations.
_EWMA_WEIGHT = 0.2


class ModelCalls(Protocol):
    """The calls a batcher makes to run its model's requests; `Inference` implements it.

    Neither goes through a batcher, so nothing a batcher runs can queue again.
    """

    def predict_now(self, runtime: ModelRuntime, payload: Any) -> Any:
        """One payload's result, on this thread; raises its `ApiError`."""

    def predict_many(self, runtime: ModelRuntime, payloads: list[Any]) -> list[Any]:
        """One result or `ApiError` per payload, in order."""


class BatchObserver(Protocol):
    """Receives what the batchers do (the metrics implement it)."""

    def observe_batch(self, model: str, size: int, seconds: float) -> None:
        """One model call ran `size` requests in `seconds`."""

    def set_queue_depth(self, model: str, depth: int) -> None:
        """`depth` requests now wait for `model` in this process."""


class _NoObserver:
    def observe_batch(self, model: str, size: int, seconds: float) -> None:
        pass

    def set_queue_depth(self, model: str, depth: int) -> None:
        pass


class _SafeObserver:
    """Passes observations on; a failure to record one is logged, never raised.

    The runner thread must survive anything an observer does: if it died, every request
    queued after it would wait forever.
    """

    def __init__(self, observer: BatchObserver) -> None:
        self._observer = observer

    def observe_batch(self, model: str, size: int, seconds: float) -> None:
        try:
            self._observer.observe_batch(model, size, seconds)
        except Exception:
            log.exception("could not record a batch", extra={"model": model})

    def set_queue_depth(self, model: str, depth: int) -> None:
        try:
            self._observer.set_queue_depth(model, depth)
        except Exception:
            log.exception("could not record the queue depth", extra={"model": model})


@dataclass(frozen=True)
class BatchLimits:
    """A model's effective limits: its handler's `BATCH`, overridden by settings."""

    max_batch_size: int
    max_latency_ms: float
    queue_limit: int

    @classmethod
    def resolve(
        cls, policy: BatchPolicy, *, max_batch_size: int | None, max_latency_ms: float | None, queue_limit: int
    ) -> BatchLimits:
        """`policy` with each override that is not None applied."""
        return cls(
            max_batch_size=max_batch_size if max_batch_size is not None else policy.max_batch_size,
            max_latency_ms=max_latency_ms if max_latency_ms is not None else policy.max_latency_ms,
            queue_limit=queue_limit,
        )


class _Waiter:
    """One queued request: its payload, and a lock held until its outcome is set."""

    __slots__ = ("_done", "enqueued", "outcome", "payload")

    def __init__(self, payload: Any) -> None:
        self.payload = payload
        self.enqueued = time.monotonic()
        self.outcome: Any = None
        # A bare lock is the cheapest one-shot signal between two threads.
        self._done = threading.Lock()
        self._done.acquire()

    def resolve(self, outcome: Any) -> None:
        self.outcome = outcome
        self._done.release()

    def wait(self) -> Any:
        self._done.acquire()
        return self.outcome


class Batcher:
    """Gathers one model's concurrent requests into batches, in one process."""

    def __init__(
        self, runtime: ModelRuntime, limits: BatchLimits, calls: ModelCalls, observer: BatchObserver | None = None
    ) -> None:
        """A batcher for `runtime`'s requests, run through `calls` within `limits`."""
        self.name = runtime.spec.name
        self.limits = limits
        self._runtime = runtime
        self._calls = calls
        self._observer: BatchObserver = _SafeObserver(observer) if observer is not None else _NoObserver()
        self._max_size = limits.max_batch_size
        self._max_wait_s = limits.max_latency_ms / 1000
        # Hot paths take the bare lock (a C call); the condition shares it for waiting.
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._queue: deque[_Waiter] = deque()
        self._busy = False  # a model call (single or batch) is running
        self._arriving = 0  # announced requests that have not submitted yet
        self._call_seconds = 0.0  # running average of one model call's duration
        self._runner: threading.Thread | None = None

    # --- what request threads call ---

    def announce(self) -> None:
        """A request for this model has started and will probably `submit()` soon."""
        with self._lock:
            self._arriving += 1

    def withdraw(self) -> None:
        """An announced request ended without submitting (e.g. its input was invalid)."""
        with self._lock:
            self._arriving = max(0, self._arriving - 1)

    def submit(self, payload: Any, *, announced: bool = False) -> Any:
        """The payload's result, computed alone or in a batch; raises its `ApiError`.

        `announced` says this request called `announce()` first.
        """
        with self._lock:
            if announced:
                self._arriving = max(0, self._arriving - 1)
            if not self._busy and not self._queue:
                self._busy = True
                waiter = None
            else:
                depth = len(self._queue)
                if depth >= self.limits.queue_limit:
                    raise self._overloaded(depth)
                waiter = _Waiter(payload)
                self._queue.append(waiter)
                depth += 1
                if self._runner is None:
                    self._start_runner()
                # The runner waits either for a first request or for a batch to fill.
                if depth == 1 or depth >= self._max_size:
                    self._cond.notify()
        if waiter is None:
            return self._run_alone(payload)
        self._observer.set_queue_depth(self.name, depth)
        outcome = waiter.wait()
        if isinstance(outcome, ApiError):
            raise outcome
        return outcome

    def queue_depth(self) -> int:
        """Requests waiting now."""
        return len(self._queue)

    def arriving(self) -> int:
        """Requests announced and not yet submitted or withdrawn."""
        return self._arriving

    # --- internals ---

    def _overloaded(self, depth: int) -> Overloaded:
        error = Overloaded(
            f"Model {self.name} has {depth} requests waiting in this server process; retry in a moment",
        )
        error.headers["Retry-After"] = "1"
        return error

    def _run_alone(self, payload: Any) -> Any:
        started = time.perf_counter()
        try:
            return self._calls.predict_now(self._runtime, payload)
        finally:
            elapsed = time.perf_counter() - started
            with self._lock:
                self._busy = False
                self._note_call(elapsed)
                if self._queue:
                    self._cond.notify()
            self._observer.observe_batch(self.name, 1, elapsed)

    def _note_call(self, seconds: float) -> None:
        previous = self._call_seconds
        self._call_seconds = seconds if previous == 0.0 else previous + _EWMA_WEIGHT * (seconds - previous)

    def _start_runner(self) -> None:
        thread = threading.Thread(target=self._serve, name=f"batcher-{self.name}", daemon=True)
        thread.start()
        self._runner = thread

    def _serve(self) -> None:
        while True:
            batch, depth = self._next_batch()
            self._observer.set_queue_depth(self.name, depth)
            self._execute(batch)

    def _next_batch(self) -> tuple[list[_Waiter], int]:
        with self._cond:
            while self._busy or not self._queue:
                self._cond.wait()
            # While the queue is not empty nobody else starts a model call, so the model
            # stays free while this waits for the announced requests to arrive.
            wait_s = min(self._max_wait_s, self._call_seconds)
            deadline = self._queue[0].enqueued + wait_s
            while len(self._queue) < self._max_size and self._arriving > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            size = min(len(self._queue), self._max_size)
            batch = [self._queue.popleft() for _ in range(size)]
            self._busy = True
            return batch, len(self._queue)

    def _execute(self, batch: list[_Waiter]) -> None:
        started = time.perf_counter()
        outcomes: list[Any] = []
        try:
            outcomes = self._outcomes([waiter.payload for waiter in batch])
        finally:
            elapsed = time.perf_counter() - started
            with self._cond:
                self._busy = False
                self._note_call(elapsed)
            if len(outcomes) != len(batch):  # only when something above escaped
                outcomes = [InternalError("The batch failed; quote the request id when reporting it")] * len(batch)
                outcomes = [copy.copy(error) for error in outcomes]
            for waiter, outcome in zip(batch, outcomes, strict=True):
                waiter.resolve(outcome)
            self._observer.observe_batch(self.name, len(batch), elapsed)

    def _outcomes(self, payloads: list[Any]) -> list[Any]:
        try:
            outcomes = self._calls.predict_many(self._runtime, payloads)
        except ApiError as error:  # e.g. the model is not loaded: every item gets it
            return [_copy_error(error) for _ in payloads]
        except Exception:
            log.exception("batch of %d failed", len(payloads), extra={"model": self.name})
            return [
                InternalError("The model failed on this input; quote the request id when reporting it")
                for _ in payloads
            ]
        if len(outcomes) != len(payloads):
            log.error("batch of %d returned %d outcomes", len(payloads), len(outcomes), extra={"model": self.name})
            return [InternalError("The model returned no result for this input") for _ in payloads]
        return outcomes


def _copy_error(error: ApiError) -> ApiError:
    # Each waiting thread raises its own instance: raising one object from several
    # threads at once would tangle their tracebacks.
    duplicate = copy.copy(error)
    duplicate.headers = dict(error.headers)
    return duplicate


class Batchers:
    """This process's batchers, one per model, made on first use.

    Threads do not survive `fork()`: a child forgets the batchers it inherited (their
    runner threads stayed in the parent) and makes its own.
    """

    def __init__(
        self,
        *,
        max_batch_size: int | None = None,
        max_latency_ms: float | None = None,
        queue_limit: int = 256,
        observer: BatchObserver | None = None,
    ) -> None:
        """Each override that is not None replaces the handler's own `BATCH` value."""
        self._overrides = (max_batch_size, max_latency_ms, queue_limit)
        self.observer: BatchObserver = observer or _NoObserver()
        self._batchers: dict[str, Batcher] = {}
        self._lock = threading.Lock()
        reset_in_forked_child(self._forget)

    def _forget(self) -> None:
        self._batchers = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> Batcher | None:
        """Model `name`'s batcher, if it has one yet (one dict read: the hot path)."""
        return self._batchers.get(name)

    def add(self, runtime: ModelRuntime, calls: ModelCalls) -> Batcher:
        """`runtime`'s batcher, made with its handler's `BATCH` policy and `calls`, unless another thread just did."""
        name = runtime.spec.name
        with self._lock:
            batcher = self._batchers.get(name)
            if batcher is None:
                max_batch_size, max_latency_ms, queue_limit = self._overrides
                limits = BatchLimits.resolve(
                    runtime.spec.batch,
                    max_batch_size=max_batch_size,
                    max_latency_ms=max_latency_ms,
                    queue_limit=queue_limit,
                )
                batcher = Batcher(runtime, limits, calls, observer=self.observer)
                self._batchers[name] = batcher
        return batcher
