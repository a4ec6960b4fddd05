"""`POST /v1/bigquery/<Model>`: a served model as a BigQuery remote function.

BigQuery splits a table into requests of up to `max_batching_rows` rows, sends them
concurrently, retries 408, 429, 500, 503 and 504 (up to 20 times) and may send one twice;
a prediction has no side effect, so answering twice is harmless. Each request's rows run
through the app's `Inference` in chunks of the model's `max_batch_size` (one
`predict_batch` call each), within the model's time budget, as every route's do.

Statuses, chosen for what BigQuery does with them: a bad row fails the call with a 400
(not retried, shown to the user) unless `on_error` is `null`; a model still loading is a
503 with `Retry-After`; more calls than this process takes (`BIGQUERY_MAX_IN_FLIGHT`
running, `BIGQUERY_QUEUE_LIMIT` waiting) are a 429 with `Retry-After` (RATE_LIMITS,
which count per client, leave this route alone: all its calls come from BigQuery); a
crash in the model is a 500 naming the request id. Every error body is exactly
`{"errorMessage": "..."}` (`error_body`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from flask.blueprints import BlueprintSetupState

from serving.config.settings import Settings
from serving.errors import ApiError, ModelNotServing, NotFound, TooManyRequests, ValidationFailed
from serving.http.body import read_json
from serving.http.model_route import find_model
from serving.http.state import get_state
from serving.observability.logs import current_request_id
from serving.protocols.bigquery.callers import CallerCheck
from serving.protocols.bigquery.wire import NULL_ROW, RemoteCall, RowReader, parse_request, short
from serving.runtime.registry import ModelNotReady, ModelRuntime, ModelStatus
from serving.runtime.rows import row_outcomes
from serving.security.access import public

log = logging.getLogger("serving.protocols.bigquery")

blueprint = Blueprint("bigquery", __name__, url_prefix="/v1/bigquery")

EXTENSION_KEY = "serving.protocols.bigquery"
# The most rows a call may carry when BIGQUERY_MAX_ROWS is unset, whatever the budget allows.
DEFAULT_ROW_CEILING = 10_000
# BigQuery gives one remote-function call 20 minutes: the default row limit keeps a call
# whose every chunk ran for the model's whole time budget within it.
CALL_SECONDS = 1200
# The route as the request metrics name it.
ROUTE_LABEL = "/v1/bigquery/<name>"
# Null replies logged one by one per call; the rest are counted in one line.
_LOGGED_NULL_ROWS = 20


class CallGate:
    """At most `in_flight` calls run at once in this process, `queue_limit` wait; the rest get a 429."""

    def __init__(self, in_flight: int, queue_limit: int) -> None:
        self._slots = threading.BoundedSemaphore(in_flight)
        self._queue_limit = queue_limit
        self._waiting = 0
        self._lock = threading.Lock()

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Run the body in a slot, waiting for one; `TooManyRequests` (429) when too many wait."""
        if not self._slots.acquire(blocking=False):
            with self._lock:
                if self._waiting >= self._queue_limit:
                    error = TooManyRequests("This server is busy with other BigQuery calls; retry later")
                    error.headers["Retry-After"] = "1"
                    raise error
                self._waiting += 1
            try:
                self._slots.acquire()
            finally:
                with self._lock:
                    self._waiting -= 1
        try:
            yield
        finally:
            self._slots.release()


@dataclass
class BigQueryState:
    """What the route keeps per app: its caller check (None: tokens are not checked) and its gate."""

    callers: CallerCheck | None
    gate: CallGate


@blueprint.record_once
def _init_state(setup: BlueprintSetupState) -> None:
    app = setup.app
    assert isinstance(app, Flask)
    settings = get_state(app).settings
    callers = (
        CallerCheck(
            invokers=settings.bigquery_invokers,
            audiences=settings.bigquery_audience,
            certs_url=settings.bigquery_certs_url,
        )
        if settings.bigquery_invokers
        else None
    )
    app.extensions[EXTENSION_KEY] = BigQueryState(
        callers, CallGate(settings.bigquery_max_in_flight, settings.bigquery_queue_limit)
    )


def _state(app: Flask) -> BigQueryState:
    state: BigQueryState = app.extensions[EXTENSION_KEY]
    return state


def max_rows(settings: Settings, runtime: ModelRuntime, default_timeout_s: float) -> int:
    """Most rows one call may carry: `BIGQUERY_MAX_ROWS`, else what the time budget allows."""
    if settings.bigquery_max_rows is not None:
        return settings.bigquery_max_rows
    size = runtime.spec.batch.max_batch_size
    budget = runtime.spec.timeout_s if runtime.spec.timeout_s is not None else default_timeout_s
    chunks = max(1, math.floor(CALL_SECONDS / budget)) if budget > 0 else DEFAULT_ROW_CEILING
    return min(DEFAULT_ROW_CEILING, size * chunks)


def _service_audiences() -> list[str]:
    origin = f"{request.scheme}://{request.host}"
    return [origin, origin + request.path]


@blueprint.post("/<model:name>")
@public  # BigQuery cannot send an API key; its ID token is checked below instead
def remote_function(name: str) -> Response:
    app_state = get_state()
    settings = app_state.settings
    if not settings.bigquery_enabled:
        raise NotFound(
            "BigQuery remote functions are off: set BIGQUERY_INVOKERS to the connection's service account "
            "(or BIGQUERY_TRUST_FRONT_END=true on a private Cloud Run service)"
        )
    own = _state(current_app)
    if own.callers is not None:
        own.callers.verify(request.headers.get("Authorization"), service_audiences=_service_audiences())
    runtime = find_model(name)
    _refuse_while_loading(runtime)
    limit = max_rows(settings, runtime, app_state.inference.budget.default_timeout_s)
    call = parse_request(read_json(request), max_rows=limit)
    with own.gate.slot():
        replies = _answer(runtime, call)
    return jsonify(replies=replies)


def _refuse_while_loading(runtime: ModelRuntime) -> None:
    """503 with `Retry-After` while the model loads (starting its load if none has), rather than wait.

    Other routes wait for a lazy model's `setup()`; BigQuery retries a 503, and a
    request parked through a long load would only hold a thread and BigQuery's patience.
    """
    status = runtime.status
    if status not in (ModelStatus.PENDING, ModelStatus.LOADING):
        return
    if status is ModelStatus.PENDING:
        threading.Thread(target=_load_quietly, args=(runtime,), name=f"load-{runtime.spec.name}", daemon=True).start()
    error = ModelNotServing(f"Model {runtime.spec.name} is loading; retry shortly", status="loading")
    error.headers["Retry-After"] = "5"
    raise error


def _load_quietly(runtime: ModelRuntime) -> None:
    # A failure is recorded on the runtime: the next request's 503 says why.
    with contextlib.suppress(ModelNotReady):
        runtime.ensure_loaded()


def _answer(runtime: ModelRuntime, call: RemoteCall) -> list[Any]:
    """One reply per call, in order; bad rows are null or fail the whole call (`on_error`)."""
    spec = runtime.spec
    reader = RowReader(spec.name, dict(spec.input_schema), spec.input_validator)
    replies: list[Any] = [None] * len(call.calls)
    todo: list[tuple[int, Any]] = []
    nulled: list[tuple[int, ApiError]] = []
    for index, arguments in enumerate(call.calls):
        try:
            payload = reader.payload(index, arguments)
        except ValidationFailed as error:
            if call.on_error == "fail":
                raise
            nulled.append((index, error))
            continue
        if payload is not NULL_ROW:
            todo.append((index, payload))
    rows = [index for index, _ in todo]
    outcomes = row_outcomes(get_state().inference, runtime, [payload for _, payload in todo])
    with contextlib.closing(outcomes):  # a failing call gives its bulk slot back at once
        for position, outcome in outcomes:
            index = rows[position]
            if isinstance(outcome, ApiError):
                if outcome.status >= 500 or call.on_error == "fail":
                    outcome.message = f"row {index}: {outcome.message}"
                    raise outcome
                nulled.append((index, outcome))
            else:
                replies[index] = _output(outcome, call.output, spec.name)
    if nulled:
        _report_nulls(spec.name, call, nulled)
    return replies


def _output(result: Any, field: str | None, model: str) -> Any:
    if field is None:
        return result
    if isinstance(result, dict) and field in result:
        return result[field]
    fields = ", ".join(map(str, result)) if isinstance(result, dict) else "none: it is not an object"
    raise ValidationFailed(
        f"user_defined_context output names {field[:64]!r}, but {model}'s result has no such field "
        f"(its fields: {fields[:200]})",
        path="$.userDefinedContext.output",
    )


def _report_nulls(model: str, call: RemoteCall, nulled: list[tuple[int, ApiError]]) -> None:
    get_state().metrics.count_rows(ROUTE_LABEL, model, "null", len(nulled))
    for index, error in nulled[:_LOGGED_NULL_ROWS]:
        log.info(
            "replied null: %s",
            error.message,
            extra={"model": model, "bigquery_request_id": call.request_id, "row": index},
        )
    if len(nulled) > _LOGGED_NULL_ROWS:
        log.info(
            "%d more rows replied null",
            len(nulled) - _LOGGED_NULL_ROWS,
            extra={"model": model, "bigquery_request_id": call.request_id},
        )


def error_body(error: ApiError) -> dict[str, Any]:
    """BigQuery's error shape: only `errorMessage`; a 5xx names the request id to quote."""
    message = error.message
    request_id = current_request_id()
    if error.status >= 500 and request_id:
        message = f"{message} (request id {request_id})"
    return {"errorMessage": short(message)}
