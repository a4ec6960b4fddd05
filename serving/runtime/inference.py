"""Calling a handler's `predict` / `predict_batch` and turning failures into API errors.

Everything that runs model code goes through `Inference`, so the HTTP routes, the batch
route and the job runner share one behaviour: the model is loaded on first use, input the
model finds unusable is a 400, a crash is a logged 500, each model call runs within its
time budget (serving/runtime/timebudget.py), and the result is checked against the
handler's OUTPUT_SCHEMA.

With batching on, `Inference` owns a `Batchers` (serving/runtime/batching.py): a single
prediction for a model with `predict_batch` is handed to that model's `Batcher`, which
runs it alone or with concurrent ones. The batcher calls back through `ModelCalls`
(`predict_now` and `predict_many`), which `Inference` implements, never into `predict`,
so nothing it runs can queue a second time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from serving.config.settings import Settings
from serving.errors import ApiError, GatewayTimeout, InputRejected, InternalError, ModelNotServing, Overloaded
from serving.kit import InvalidInput
from serving.runtime.batching import Batcher, Batchers, BatchObserver
from serving.runtime.registry import ModelNotReady, ModelRuntime, ModelStatus
from serving.runtime.timebudget import TimeBudget

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
    """Runs model code for the routes and the jobs; one per app. It is the batchers' `ModelCalls`."""

    def __init__(self, *, validate_output: bool, budget: TimeBudget, batchers: Batchers | None = None) -> None:
        """`budget` bounds every model call; `batchers`, when given, batch concurrent predictions."""
        self.validate_output = validate_output
        self.budget = budget
        self.batchers = batchers

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
        return batcher.submit(payload, announced=arrival is not None and arrival.take(batcher))

    def batcher_for(self, runtime: ModelRuntime) -> Batcher | None:
        """This process's batcher for `runtime`, or None when it cannot batch."""
        batchers = self.batchers
        if batchers is None or runtime.spec.predict_batch is None:
            return None
        return batchers.get(runtime.spec.name) or batchers.add(runtime, self)

    def predict_now(self, runtime: ModelRuntime, payload: Any) -> Any:
        """`predict` for one payload, on this thread (never through a batcher), within the budget."""
        model = self.model_for(runtime)
        try:
            result = self.call_model(runtime, lambda: runtime.spec.predict(model, payload))
        except InvalidInput as exc:
            raise InputRejected(str(exc) or "The model could not use this input") from None
        except ApiError:
            raise
        except Exception:
            log.exception("predict failed", extra={"model": runtime.spec.name})
            raise InternalError("The model failed on this input; quote the request id when reporting it") from None
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
            except (GatewayTimeout, Overloaded, ModelNotServing):
                raise  # over the time budget, or degraded: retrying item by item would be worse
            except Exception:  # noqa: BLE001
                # Not necessarily a bug: one unusable item (a corrupt image) fails the
                # vectorised call; the per-item pass below finds which.
                log.info("predict_batch raised; retrying item by item", extra={"model": runtime.spec.name})
        outcomes: list[Any | ApiError] = []
        for payload in payloads:
            try:
                outcomes.append(self.predict_now(runtime, payload))
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
            return runtime.ensure_loaded()
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
    return Inference(validate_output=settings.validate_output, budget=budget, batchers=batchers)
