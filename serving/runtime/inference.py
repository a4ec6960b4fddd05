"""Calling a handler's `predict` / `predict_batch` and turning failures into API errors.

Everything that runs model code goes through `Inference`, so the HTTP routes, the batch
route and the job runner share one behaviour: the model is loaded on first use, input the
model finds unusable is a 400, a crash is a logged 500, and the result is checked against
the handler's OUTPUT_SCHEMA.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from serving.contract import InvalidInput
from serving.errors import ApiError, GatewayTimeout, InternalError, ModelUnavailable, Overloaded
from serving.errors import InvalidInput as InvalidInputError
from serving.runtime.registry import ModelNotReady, ModelRuntime, ModelStatus
from serving.runtime.timebudget import TimeBudget

log = logging.getLogger("serving.runtime.inference")


class Inference:
    """Runs model code for the routes; one per app."""

    def __init__(self, *, validate_output: bool, budget: TimeBudget | None = None) -> None:
        self.validate_output = validate_output
        self.budget = budget

    def call_model(self, runtime: ModelRuntime, fn: Callable[[], Any]) -> Any:
        """`fn()` (one model call) within the model's time budget, when there is one."""
        if self.budget is None:
            return fn()
        return self.budget.call(runtime.spec.name, runtime.spec.timeout_s, fn)

    def model_for(self, runtime: ModelRuntime) -> Any:
        """The loaded model, or `ModelUnavailable` (503) saying why it cannot serve."""
        try:
            return runtime.ensure_loaded()
        except ModelNotReady as exc:
            error = ModelUnavailable(
                f"Model {exc.name} is {exc.status.value}" + (f": {exc.reason}" if exc.reason else ""),
                status=exc.status.value,
            )
            if exc.status is ModelStatus.LOADING:
                error.headers["Retry-After"] = "5"
            raise error from None

    def predict(self, runtime: ModelRuntime, payload: Any) -> Any:
        """One validated payload's result; raises an `ApiError` on any failure."""
        model = self.model_for(runtime)
        try:
            result = self.call_model(runtime, lambda: runtime.spec.predict(model, payload))
        except InvalidInput as exc:
            raise InvalidInputError(str(exc) or "The model could not use this input") from None
        except ApiError:
            raise
        except Exception:
            log.exception("predict failed", extra={"model": runtime.spec.name})
            raise InternalError("The model failed on this input; quote the request id when reporting it") from None
        self.check_output(runtime, result)
        return result

    def predict_many(self, runtime: ModelRuntime, payloads: list[Any]) -> list[Any | ApiError]:
        """Each payload's result in order, or the `ApiError` for that one item.

        Uses the handler's `predict_batch` when it has one (one model call for all); if
        that raises, falls back to `predict` per item so one bad item fails only itself.
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
            except (GatewayTimeout, Overloaded, ModelUnavailable):
                raise  # over the time budget, or degraded: retrying item by item would be worse
            except Exception:  # noqa: BLE001
                # Not necessarily a bug: one unusable item (a corrupt image) fails the
                # vectorised call; the per-item pass below finds which.
                log.info("predict_batch raised; retrying item by item", extra={"model": runtime.spec.name})
        outcomes: list[Any | ApiError] = []
        for payload in payloads:
            try:
                outcomes.append(self.predict(runtime, payload))
            except ApiError as error:
                outcomes.append(error)
        return outcomes

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
