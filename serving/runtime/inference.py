"""Calling a handler's `predict` / `predict_batch` and turning failures into API errors.

Everything that runs model code goes through `Inference`, so the HTTP routes, the batch
route and the job runner share one behaviour: the model is loaded on first use, input the
model finds unusable is a 400, a crash is a logged 500, each model call runs within its
time budget (serving/runtime/timebudget.py), and the result is checked against the
handler's OUTPUT_SCHEMA.

With batching on, `Inference` owns a `Batchers` (serving/runtime/batching.py): a single
prediction for a model with `predict_batch` is handed to that model's `Batcher`, which
runs it alone or with concurrent ones. The batcher calls back through `ModelCalls`
(`predict_now` and `predict_many`, which `_PreparedCalls` implements over `Inference`'s
`run_prepared` and `run_prepared_many`), never into `predict`, so nothing it runs can
queue a second time.

A handler with `prepare(model, payload)` has its per-request work (decoding an image)
done before the batch, on the request's own thread: `predict` prepares the payload and
submits what `prepare` returned, so requests decode in parallel while a batch runs, and
the batch's serial section only gathers ready arrays. The batchers call back into
`_PreparedCalls`, which takes prepared inputs; `predict_now` and `predict_many` take
payloads, and prepare them themselves. A handler's `admit(model, payload)` runs before:
for a request of several items, every item is admitted before any is prepared, so a
request whose items together exceed an allowance (pixels) is refused before any work.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from serving.config.settings import Settings
from serving.errors import (
    ApiError,
    ClientGone,
    GatewayTimeout,
    InputRejected,
    InternalError,
    ModelNotServing,
    Overloaded,
    TooManyPixels,
)
from serving.kit import InvalidInput
from serving.runtime.batching import Batcher, Batchers, BatchObserver
from serving.runtime.registry import ModelNotReady, ModelRuntime, ModelStatus
from serving.runtime.request_scope import current_scope
from serving.runtime.timebudget import TimeBudget

# Errors about the whole request (its pixel allowance, its time budget, its client), never one item.
REQUEST_WIDE = (TooManyPixels, GatewayTimeout, ClientGone)

log = logging.getLogger("serving.runtime.inference")


class Arrival:
    """A request announced to its model's batcher before its body was read.

    It ends exactly once: taken by `Inference.predict`, or withdrawn (`withdraw()`) when
    the request ends without a prediction, e.g. because its input was invalid.
    """

    __slots__ = ("_batcher",)

    def __init__(self, batcher: Batcher) -> None:
        self._batcher: Batcher | None = batcher

    def take(self, batcher: Batcher) -> bool:
        """True (once) when this arrival was announced to `batcher`: it now submits."""
        if self._batcher is not batcher:
            return False
        self._batcher = None
        return True

    def withdraw(self) -> None:
        """The request will not submit: the batcher stops expecting it. Idempotent."""
        batcher, self._batcher = self._batcher, None
        if batcher is not None:
            batcher.withdraw()


class Inference:
    """Runs model code for the routes and the jobs; one per app. Its batchers call back through `_PreparedCalls`."""

    def __init__(
        self,
        *,
        validate_output: bool,
        budget: TimeBudget,
        batchers: Batchers | None = None,
        bulk_slots: threading.BoundedSemaphore | None = None,
    ) -> None:
        """`budget` bounds every model call; `batchers`, when given, batch concurrent predictions;
        `bulk_slots`, when given, bound the requests of many rows running at once (serving/runtime/rows.py)."""
        self.validate_output = validate_output
        self.budget = budget
        self.batchers = batchers
        self.bulk_slots = bulk_slots
        self._prepared_calls = _PreparedCalls(self)

    # --- single predictions ---

    @contextmanager
    def arriving(self, runtime: ModelRuntime) -> Iterator[Arrival | None]:
        """Within the block, `runtime`'s batcher expects a prediction (None: it does not batch).

        A route enters it once it has found the model and before it reads the body, so
        that a batch about to run may wait for the request; it passes the `Arrival` to
        `predict`. Leaving the block without that withdraws it, whatever happened.
        """
        arrival = self.announce(runtime)
        try:
            yield arrival
        finally:
            if arrival is not None:
                arrival.withdraw()

    def announce(self, runtime: ModelRuntime) -> Arrival | None:
        """Tell `runtime`'s batcher that a prediction is on its way; None when it does not batch.

        The caller must pass the `Arrival` to `predict`, or withdraw it: `arriving` does both.
        """
        if runtime.status is not ModelStatus.READY:
            return None  # loading or failed: no batch will be waiting for it
        batcher = self.batcher_for(runtime)
        if batcher is None:
            return None
        batcher.announce()
        return Arrival(batcher)

    def predict(self, runtime: ModelRuntime, payload: Any, *, arrival: Arrival | None = None) -> Any:
        """One validated payload's result, batched with concurrent ones when the model batches.

        Raises an `ApiError` on any failure.
        """
        batcher = self.batcher_for(runtime)
        if batcher is None:
            return self.predict_now(runtime, payload)
        scope = current_scope()
        if scope is not None:  # the budget runs while it waits in the queue too
            scope.start_deadline(self.budget.timeout_for(runtime.spec.timeout_s))
        # Prepared before the arrival is taken: a batch about to run keeps waiting for it.
        prepared = self.prepare(runtime, payload)
        return batcher.submit(prepared, announced=arrival is not None and arrival.take(batcher))

    def batcher_for(self, runtime: ModelRuntime) -> Batcher | None:
        """This process's batcher for `runtime`, or None when it cannot batch."""
        batchers = self.batchers
        if batchers is None or runtime.spec.predict_batch is None:
            return None
        return batchers.get(runtime.spec.name) or batchers.add(runtime, self._prepared_calls)

    def prepare(self, runtime: ModelRuntime, payload: Any) -> Any:
        """What the handler's `admit` then `prepare` make of `payload` (the payload itself without them).

        Raises their `ApiError`. It runs on the caller's thread, outside the time budget: a
        handler's `prepare` is bounded by its input's limits (the image's size, the text's length).
        """
        admitted = self._stage(runtime, "admit", runtime.spec.admit, payload)
        return self._stage(runtime, "prepare", runtime.spec.prepare, admitted)

    def _stage(self, runtime: ModelRuntime, name: str, stage: Callable[[Any, Any], Any] | None, value: Any) -> Any:
        """The handler's optional `stage` (`admit`, `prepare`) of `value`; `value` itself without one."""
        if stage is None:
            return value
        model = self.model_for(runtime)
        with _handler_errors(runtime, name):
            return stage(model, value)

    def predict_now(self, runtime: ModelRuntime, payload: Any) -> Any:
        """`predict` for one payload, on this thread (never through a batcher), within the budget."""
        return self.run_prepared(runtime, self.prepare(runtime, payload))

    def run_prepared(self, runtime: ModelRuntime, prepared: Any) -> Any:
        """`predict` for one prepared input (see `prepare`), on this thread, within the budget."""
        model = self.model_for(runtime)
        with _handler_errors(runtime, "predict"):
            result = self.call_model(runtime, lambda: runtime.spec.predict(model, prepared))
        self.check_output(runtime, result)
        return result

    # --- several payloads ---

    def predict_many(self, runtime: ModelRuntime, payloads: list[Any]) -> list[Any | ApiError]:
        """Each payload's result in order, or the `ApiError` for that one item.

        Uses the handler's `predict_batch` when it has one (one model call for all); if
        that raises, falls back to `predict` per item, on this thread (never through a
        batcher), so one bad item fails only itself.
        """
        if not payloads:
            return []
        spec = runtime.spec
        if spec.prepare is None and spec.admit is None:
            return self.run_prepared_many(runtime, payloads)
        # Every item admitted before any is prepared: a request over its allowance does no work.
        outcomes = self._each(payloads, lambda payload: self._stage(runtime, "admit", spec.admit, payload))
        outcomes = self._each(outcomes, lambda admitted: self._stage(runtime, "prepare", spec.prepare, admitted))
        ready = [index for index, outcome in enumerate(outcomes) if not isinstance(outcome, ApiError)]
        for index, outcome in zip(ready, self.run_prepared_many(runtime, [outcomes[i] for i in ready]), strict=True):
            outcomes[index] = outcome
        return outcomes

    @staticmethod
    def _each(items: list[Any], stage: Callable[[Any], Any]) -> list[Any]:
        """`stage` of each item, or its `ApiError`; an item that is an `ApiError` already stays one."""
        outcomes: list[Any] = []
        for item in items:
            if isinstance(item, ApiError):
                outcomes.append(item)
                continue
            try:
                outcomes.append(stage(item))
            except REQUEST_WIDE:
                # The request's allowance, budget or client is gone, not this item: going on
                # with the other items would be work nobody can use.
                raise
            except ApiError as error:
                outcomes.append(error)
        return outcomes

    def run_prepared_many(self, runtime: ModelRuntime, payloads: list[Any]) -> list[Any | ApiError]:
        """`predict_many` for prepared inputs."""
        if not payloads:
            return []
        model = self.model_for(runtime)
        batch = runtime.spec.predict_batch
        if batch is not None and len(payloads) > 1:
            try:
                results = self.call_model(runtime, lambda: batch(model, payloads))
                if isinstance(results, list) and len(results) == len(payloads):
                    for result in results:
                        self.check_output(runtime, result)
                    return list(results)
                log.error(
                    "predict_batch returned %s for %d payloads; falling back to predict",
                    type(results).__name__,
                    len(payloads),
                    extra={"model": runtime.spec.name},
                )
            except (GatewayTimeout, ClientGone, TooManyPixels, Overloaded, ModelNotServing):
                raise  # over a budget, nobody waits, or degraded: retrying item by item would be worse
            except Exception:  # noqa: BLE001
                # Not necessarily a bug: one unusable item (a corrupt image) fails the
                # vectorised call; the per-item pass below finds which.
                log.info("predict_batch raised; retrying item by item", extra={"model": runtime.spec.name})
        outcomes: list[Any | ApiError] = []
        scope = current_scope()
        for payload in payloads:
            if scope is not None:
                scope.check()  # the request's budget may be spent by now
            try:
                outcomes.append(self.run_prepared(runtime, payload))
            except ApiError as error:
                outcomes.append(error)
        return outcomes

    # --- shared steps ---

    def call_model(self, runtime: ModelRuntime, fn: Callable[[], Any]) -> Any:
        """`fn()` (one model call) within the model's time budget."""
        return self.budget.call(runtime.spec.name, runtime.spec.timeout_s, fn)

    def model_for(self, runtime: ModelRuntime) -> Any:
        """The loaded model, or `ModelNotServing` (503) saying why it cannot serve."""
        try:
            return runtime.ensure_loaded(wait=False)
        except ModelNotReady as exc:
            error = ModelNotServing(
                f"Model {exc.name} is {exc.status.value}" + (f": {exc.reason}" if exc.reason else ""),
                status=exc.status.value,
            )
            if exc.status is ModelStatus.LOADING:
                error.headers["Retry-After"] = "5"
            raise error from None

    def check_output(self, runtime: ModelRuntime, result: Any) -> None:
        """Raise a logged 500 when `result` breaks the handler's OUTPUT_SCHEMA."""
        validator = runtime.spec.output_validator
        if not self.validate_output or validator is None:
            return
        found = validator.first_error(result)
        if found is not None:
            message, path = found
            log.error(
                "predict returned a result that breaks OUTPUT_SCHEMA at %s: %s",
                path,
                message,
                extra={"model": runtime.spec.name},
            )
            raise InternalError("The model returned an invalid result; quote the request id when reporting it")


class _PreparedCalls:
    """The batchers' `ModelCalls`: `Inference`'s calls for inputs `Inference.predict` already prepared."""

    def __init__(self, inference: Inference) -> None:
        self._inference = inference

    def predict_now(self, runtime: ModelRuntime, payload: Any) -> Any:
        return self._inference.run_prepared(runtime, payload)

    def predict_many(self, runtime: ModelRuntime, payloads: list[Any]) -> list[Any]:
        return self._inference.run_prepared_many(runtime, payloads)


def create_inference(settings: Settings, observer: BatchObserver | None = None) -> Inference:
    """The app's `Inference`: with a time budget, and batchers unless `settings.batching` is off.

    A batch that overruns its budget answers 504 to every request in it.
    """
    budget = TimeBudget(default_timeout_s=settings.predict_timeout_s, max_abandoned=settings.max_abandoned_calls)
    batchers = (
        Batchers(
            max_batch_size=settings.batch_max_size,
            max_latency_ms=settings.batch_max_latency_ms,
            queue_limit=settings.batch_queue_limit,
            observer=observer,
        )
        if settings.batching
        else None
    )
    return Inference(
        validate_output=settings.validate_output,
        budget=budget,
        batchers=batchers,
        bulk_slots=threading.BoundedSemaphore(settings.bulk_max_in_flight),
    )


@contextlib.contextmanager
def _handler_errors(runtime: ModelRuntime, stage: str) -> Iterator[None]:
    """What a handler's `stage` raised, as the API answers it: `InvalidInput` a 400, an
    `ApiError` as it is, anything else a 500 that tells the client only the request id
    (the traceback goes to the log)."""
    try:
        yield
    except InvalidInput as exc:
        raise InputRejected(str(exc) or "The model could not use this input") from None
    except ApiError:
        raise
    except Exception:
        log.exception("%s failed", stage, extra={"model": runtime.spec.name})
        raise InternalError("The model failed on this input; quote the request id when reporting it") from None
