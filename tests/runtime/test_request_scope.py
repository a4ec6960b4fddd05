"""A request's scope: one time budget, the client-gone probe, the pixel allowance, and what stops."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

import pytest

from models.digits.examples import THREE_BASE64
from serving.errors import ApiError, ClientGone, GatewayTimeout, TooManyPixels
from serving.http.body_deadline import BodyReadDeadline
from serving.http.scope import RequestScopes
from serving.kit import InvalidInput
from serving.runtime import request_scope
from serving.runtime.batching import Batcher, BatchLimits
from serving.runtime.request_scope import RequestScope, current_scope, opened_scope
from serving.runtime.timebudget import TimeBudget


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=8) as executor:
        yield executor


def test_outside_a_request_nothing_is_checked_or_charged() -> None:
    assert current_scope() is None
    request_scope.check(ask_client=True)
    request_scope.charge_pixels(10**12)


@pytest.mark.parametrize(
    ("scope", "error"),
    [
        pytest.param(RequestScope(), None, id="fresh"),
        pytest.param(RequestScope(budget_s=60), None, id="budget-not-started"),
        pytest.param(RequestScope(client_gone=lambda: True), ClientGone, id="client-gone"),
    ],
)
def test_check_raises_only_when_nobody_waits(scope: RequestScope, error: type[ApiError] | None) -> None:
    with opened_scope(scope):
        if error is None:
            request_scope.check(ask_client=True)
        else:
            with pytest.raises(error):
                request_scope.check(ask_client=True)


def test_the_client_is_asked_only_at_coarse_steps() -> None:
    asked: list[int] = []
    scope = RequestScope(client_gone=lambda: asked.append(1) is None)

    scope.check()  # a per-item check: no system call
    assert asked == []
    with pytest.raises(ClientGone):
        scope.check(ask_client=True)
    assert asked == [1]
    with pytest.raises(ClientGone):
        scope.check()  # known now, without asking again
    assert asked == [1]


def test_the_client_is_asked_at_most_once_per_probe_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = iter([False, False, True])
    asked: list[int] = []

    def probe() -> bool:
        asked.append(1)
        return next(answers)

    scope = RequestScope(client_gone=probe)
    monkeypatch.setattr(request_scope, "CLIENT_PROBE_INTERVAL_S", 60.0)

    scope.check(ask_client=True)  # the first coarse step asks
    scope.check(ask_client=True)  # within the interval: the last answer stands
    assert len(asked) == 1

    monkeypatch.setattr(request_scope, "CLIENT_PROBE_INTERVAL_S", 0.0)
    scope._next_probe = 0.0  # the interval has passed
    scope.check(ask_client=True)
    assert len(asked) == 2
    with pytest.raises(ClientGone):
        scope.check(ask_client=True)
    with pytest.raises(ClientGone):
        scope.check(ask_client=True)  # gone is final, without asking again
    assert len(asked) == 3


def test_a_spent_budget_is_a_504_and_the_deadline_is_set_once() -> None:
    scope = RequestScope(budget_s=0.05)
    scope.start_deadline()
    first = scope.deadline
    scope.start_deadline(60)  # a later model call does not extend it

    assert scope.deadline == first
    time.sleep(0.06)
    with pytest.raises(GatewayTimeout):
        scope.check()


def test_the_pixel_allowance_is_charged_and_refunded() -> None:
    scope = RequestScope(max_pixels=100)
    scope.charge_pixels(60)
    with pytest.raises(TooManyPixels, match="40 left of MAX_PIXELS_PER_REQUEST"):
        scope.charge_pixels(41)
    scope.refund_pixels(60)
    scope.charge_pixels(100)

    assert scope.pixels_left == 0


def test_a_request_has_one_budget_over_all_its_model_calls() -> None:
    budget = TimeBudget(default_timeout_s=0.3, max_abandoned=10)
    with opened_scope(RequestScope()) as scope:
        budget.call("M", None, lambda: time.sleep(0.2))
        with pytest.raises(GatewayTimeout):  # only 0.1 s of the 0.3 s is left
            budget.call("M", None, lambda: time.sleep(0.2))
        with pytest.raises(GatewayTimeout):  # spent: the next call does not even start
            budget.call("M", None, lambda: pytest.fail("started after the budget was spent"))
    assert scope.abandoned


def test_an_abandoned_call_stops_at_its_next_check() -> None:
    """The call runs on abandoned after the 504; its loop sees the scope is over and stops."""
    budget = TimeBudget(default_timeout_s=0.1, max_abandoned=10)
    items_done: list[int] = []
    stopped = threading.Event()

    def long_loop() -> None:
        try:
            for item in range(100):
                request_scope.check()
                time.sleep(0.02)
                items_done.append(item)
        finally:
            stopped.set()

    with opened_scope(RequestScope()), pytest.raises(GatewayTimeout):
        budget.call("Loop", None, long_loop)

    assert stopped.wait(2)
    assert len(items_done) < 10  # not the 100 a loop without checks runs for nobody
    assert budget.abandoned("Loop") == 0


def _runtime(name: str) -> Any:
    """What a batcher reads of its model's runtime: the name."""
    return SimpleNamespace(spec=SimpleNamespace(name=name))


class _Calls:
    """The `ModelCalls` a batcher makes, from two plain functions."""

    def __init__(self, one: Callable[[Any], Any], many: Callable[[list[Any]], list[Any]]) -> None:
        self.one, self.many = one, many

    def predict_now(self, runtime: Any, payload: Any) -> Any:
        return self.one(payload)

    def predict_many(self, runtime: Any, payloads: list[Any]) -> list[Any]:
        return self.many(payloads)


def test_the_batcher_drops_queued_work_whose_request_is_over(pool: ThreadPoolExecutor) -> None:
    gate = threading.Event()
    ran: list[list[Any]] = []

    def one(payload: Any) -> Any:
        assert gate.wait(5)
        ran.append([payload])
        return payload

    def many(payloads: list[Any]) -> list[Any]:
        ran.append(list(payloads))
        return list(payloads)

    batcher = Batcher(
        _runtime("Drop"), BatchLimits(max_batch_size=8, max_latency_ms=0, queue_limit=8), _Calls(one, many)
    )
    first = pool.submit(batcher.submit, "first")  # runs alone and holds the model
    time.sleep(0.05)
    deadline = time.monotonic() + 5

    gone = RequestScope(client_gone=lambda: True)
    live = RequestScope()

    def submit_in(scope: RequestScope, payload: str) -> Any:
        with opened_scope(scope):
            return batcher.submit(payload)

    dropped = pool.submit(submit_in, gone, "gone")
    kept = pool.submit(submit_in, live, "live")
    while batcher.queue_depth() < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    gate.set()

    assert first.result(5) == "first"
    assert kept.result(5) == "live"
    with pytest.raises(ClientGone):
        dropped.result(5)
    assert all("gone" not in call for call in ran)


def test_a_queued_request_leaves_the_queue_when_its_budget_is_spent(pool: ThreadPoolExecutor) -> None:
    gate = threading.Event()
    batcher = Batcher(
        _runtime("Slow"),
        BatchLimits(max_batch_size=8, max_latency_ms=0, queue_limit=8),
        _Calls(lambda payload: gate.wait(5) and payload, lambda payloads: [gate.wait(5) and p for p in payloads]),
    )
    first = pool.submit(batcher.submit, "first")
    time.sleep(0.05)
    scope = RequestScope(budget_s=0.1)
    scope.start_deadline()

    started = time.monotonic()
    with opened_scope(scope), pytest.raises(GatewayTimeout, match="did not start"):
        batcher.submit("late")
    assert time.monotonic() - started < 1
    assert batcher.queue_depth() == 0
    gate.set()
    assert first.result(5) == "first"


def test_digits_charges_every_image_before_decoding_any() -> None:
    from models.digits import image
    from models.digits.model import DigitClassifier

    classifier = DigitClassifier.load()
    one = image.declared_pixels(image.decode_base64(THREE_BASE64))
    with opened_scope(RequestScope(max_pixels=10 * one)) as scope:
        classifier.predict([THREE_BASE64])
        assert scope.pixels_left == 9 * one
        with pytest.raises(TooManyPixels, match="100 images"):
            classifier.predict([THREE_BASE64] * 100)
        assert scope.pixels_left == 9 * one  # the refused call took nothing
        truncated = base64.b64encode(image.decode_base64(THREE_BASE64)[:40]).decode()  # header intact
        with pytest.raises(InvalidInput, match="not a valid PNG"):  # what was charged is given back
            classifier.predict([THREE_BASE64, truncated])
        assert scope.pixels_left == 9 * one


def test_every_app_call_runs_in_a_scope_of_its_own() -> None:
    seen: list[RequestScope | None] = []

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        seen.append(current_scope())
        start_response("200 OK", [])
        return [b""]

    middleware = RequestScopes(app, max_pixels=123)
    for _ in range(2):
        middleware({}, lambda *args: None)

    first, second = seen
    assert first is not None
    assert second is not None
    assert first is not second
    assert first.pixels_left == 123
    assert not first.client_gone()  # no gunicorn socket: never taken for gone
    assert current_scope() is None  # closed after the call


def test_the_deadline_counts_from_the_body_not_from_the_first_model_call() -> None:
    scope = RequestScope()
    with opened_scope(scope):
        request_scope.body_arrived()
        time.sleep(0.05)
        scope.start_deadline(10)

    assert scope.started is not None
    assert scope.deadline == scope.started + 10


def test_create_app_wraps_the_app_in_the_body_deadline_then_the_request_scopes(make_app: Callable[..., Any]) -> None:
    app = make_app()

    assert isinstance(app.wsgi_app, BodyReadDeadline)
    assert isinstance(app.wsgi_app.app, RequestScopes)
