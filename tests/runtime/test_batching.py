"""Adaptive micro-batching: lone requests run at once, concurrent ones run together."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
from flask import Flask

from serving.config.settings import Settings
from serving.errors import ApiError, InputRejected, ModelNotServing, Overloaded
from serving.http.state import get_state
from serving.runtime.batching import Batcher, BatchLimits
from serving.runtime.handlers import BatchPolicy
from serving.runtime.inference import create_inference
from tests.conftest import FIXTURE_HANDLERS

BATCHING_HANDLERS = FIXTURE_HANDLERS / "batching"


def _eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.002)


class FakeModel:
    """Doubles numbers; `gate` holds every call, `calls` records each call's payloads."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Semaphore(0)
        self.calls: list[list[Any]] = []
        self.threads: list[int] = []
        self.seconds = seconds

    def _enter(self, payloads: list[Any]) -> None:
        self.threads.append(threading.get_ident())
        self.entered.release()
        assert self.gate.wait(10)
        time.sleep(self.seconds)
        self.calls.append(payloads)

    def predict_now(self, runtime: Any, payload: Any) -> Any:
        self._enter([payload])
        if payload == "bad":
            raise InputRejected("bad payload")
        return payload * 2

    def predict_many(self, runtime: Any, payloads: list[Any]) -> list[Any]:
        self._enter(list(payloads))
        return [InputRejected("bad payload") if p == "bad" else p * 2 for p in payloads]


def _batcher(
    model: FakeModel, *, size: int = 32, latency_ms: float = 0, queue_limit: int = 256, name: str = "Fake"
) -> Batcher:
    limits = BatchLimits(max_batch_size=size, max_latency_ms=latency_ms, queue_limit=queue_limit)
    return Batcher(_runtime(name), limits, model)


def _runtime(name: str) -> Any:
    """What a batcher reads of its model's runtime: the name."""
    return SimpleNamespace(spec=SimpleNamespace(name=name))


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=16) as executor:
        yield executor


def _hold_model(model: FakeModel, batcher: Batcher, pool: ThreadPoolExecutor, payload: Any = 0) -> Future[Any]:
    """Start one call and keep it running (the gate closed) until the test opens it."""
    model.gate.clear()
    first = pool.submit(batcher.submit, payload)
    assert model.entered.acquire(timeout=5)
    return first


def _queue(batcher: Batcher, pool: ThreadPoolExecutor, payloads: list[Any]) -> list[Future[Any]]:
    futures = []
    for payload in payloads:  # one by one, so the queue keeps this order
        futures.append(pool.submit(batcher.submit, payload))
        _wait_for_depth(batcher, len(futures))
    return futures


def _wait_for_depth(batcher: Batcher, depth: int) -> None:
    _eventually(lambda: batcher.queue_depth() == depth)


def test_a_lone_request_runs_at_once_on_its_own_thread() -> None:
    model = FakeModel()
    batcher = _batcher(model, latency_ms=1000, name="Lone")

    result = batcher.submit(21)

    assert result == 42
    # No waiting for company: a queued request runs on the batcher's thread, and only
    # after a batch has had its chance to fill; this one ran alone, on the caller's.
    assert model.calls == [[21]]
    assert model.threads == [threading.get_ident()]
    assert "batcher-Lone" not in [thread.name for thread in threading.enumerate()]


def test_requests_arriving_while_the_model_is_busy_run_as_one_batch(pool: ThreadPoolExecutor) -> None:
    model = FakeModel()
    batcher = _batcher(model)
    first = _hold_model(model, batcher, pool, payload=1)

    queued = _queue(batcher, pool, [2, 3, 4])
    model.gate.set()

    assert first.result(5) == 2
    assert [future.result(5) for future in queued] == [4, 6, 8]
    assert model.calls == [[1], [2, 3, 4]]


def test_batches_never_exceed_max_batch_size(pool: ThreadPoolExecutor) -> None:
    model = FakeModel()
    batcher = _batcher(model, size=2)
    first = _hold_model(model, batcher, pool)

    queued = _queue(batcher, pool, [1, 2, 3, 4, 5])
    model.gate.set()

    first.result(5)
    assert [future.result(5) for future in queued] == [2, 4, 6, 8, 10]
    assert [len(call) for call in model.calls] == [1, 2, 2, 1]


def test_one_bad_item_fails_only_itself(pool: ThreadPoolExecutor) -> None:
    model = FakeModel()
    batcher = _batcher(model)
    first = _hold_model(model, batcher, pool)

    good, bad, other = _queue(batcher, pool, [1, "bad", 3])
    model.gate.set()

    first.result(5)
    assert good.result(5) == 2
    assert other.result(5) == 6
    with pytest.raises(InputRejected, match="bad payload"):
        bad.result(5)


def test_a_full_queue_answers_overloaded_with_retry_after(pool: ThreadPoolExecutor) -> None:
    model = FakeModel()
    batcher = _batcher(model, queue_limit=2)
    first = _hold_model(model, batcher, pool)
    queued = _queue(batcher, pool, [1, 2])

    with pytest.raises(Overloaded) as info:
        batcher.submit(3)
    model.gate.set()

    assert info.value.status == 503
    assert info.value.headers["Retry-After"] == "1"
    assert first.result(5) == 0
    assert [future.result(5) for future in queued] == [2, 4]


def test_an_error_for_the_whole_batch_reaches_every_request_as_its_own_copy(pool: ThreadPoolExecutor) -> None:
    model = FakeModel()

    def unavailable(runtime: Any, payloads: list[Any]) -> list[Any]:
        error = ModelNotServing("Model Fake is failed")
        error.headers["Retry-After"] = "5"
        raise error

    model.predict_many = unavailable  # type: ignore[method-assign]
    limits = BatchLimits(max_batch_size=8, max_latency_ms=0, queue_limit=8)
    batcher = Batcher(_runtime("Fake"), limits, model)
    first = _hold_model(model, batcher, pool)
    queued = _queue(batcher, pool, [1, 2])
    model.gate.set()

    first.result(5)
    errors = [future.exception(5) for future in queued]
    assert all(isinstance(error, ModelNotServing) for error in errors)
    assert errors[0] is not errors[1]
    assert [error.headers["Retry-After"] for error in errors if isinstance(error, ApiError)] == ["5", "5"]


def test_a_crash_in_the_batch_call_is_a_500_for_each_request(pool: ThreadPoolExecutor) -> None:
    model = FakeModel()

    def crash(runtime: Any, payloads: list[Any]) -> list[Any]:
        raise RuntimeError("secret detail")

    model.predict_many = crash  # type: ignore[method-assign]
    limits = BatchLimits(max_batch_size=8, max_latency_ms=0, queue_limit=8)
    batcher = Batcher(_runtime("Fake"), limits, model)
    first = _hold_model(model, batcher, pool)
    queued = _queue(batcher, pool, [1, 2])
    model.gate.set()

    first.result(5)
    for future in queued:
        error = future.exception(5)
        assert isinstance(error, ApiError)
        assert error.status == 500
        assert "secret" not in error.message


@pytest.mark.parametrize(
    ("announced", "sizes"), [(True, [1, 1, 2]), (False, [1, 1, 1, 1])], ids=["announced", "silent"]
)
def test_a_batch_waits_only_for_requests_announced_on_their_way(
    pool: ThreadPoolExecutor, announced: bool, sizes: list[int]
) -> None:
    model = FakeModel()
    batcher = _batcher(model, latency_ms=5000)
    model.seconds = 0.6
    batcher.submit(0)  # one slow call: waiting up to ~0.5 s costs less than another call
    model.seconds = 0.0
    first = _hold_model(model, batcher, pool)
    if announced:
        batcher.announce()
    (queued,) = _queue(batcher, pool, [1])
    model.gate.set()
    first.result(5)

    time.sleep(0.1)  # the announced request arrives while the batch waits for it
    late = batcher.submit(2, announced=announced)

    assert queued.result(5) == 2
    assert late == 4
    assert [len(call) for call in model.calls] == sizes
    assert batcher.arriving() == 0


@pytest.mark.parametrize(
    ("policy", "overrides", "expected"),
    [
        (BatchPolicy(), {}, (32, 5.0)),
        (BatchPolicy(8, 2.0), {}, (8, 2.0)),
        (BatchPolicy(8, 2.0), {"max_batch_size": 64}, (64, 2.0)),
        (BatchPolicy(8, 2.0), {"max_latency_ms": 0.0}, (8, 0.0)),
    ],
    ids=["defaults", "handler", "size-override", "latency-override"],
)
def test_limits_come_from_the_handler_and_settings_override_them(
    policy: BatchPolicy, overrides: dict[str, Any], expected: tuple[int, float]
) -> None:
    limits = BatchLimits.resolve(
        policy,
        max_batch_size=overrides.get("max_batch_size"),
        max_latency_ms=overrides.get("max_latency_ms"),
        queue_limit=10,
    )

    assert (limits.max_batch_size, limits.max_latency_ms, limits.queue_limit) == (*expected, 10)


# --- through the app: the Gated fixture handler ---


@pytest.fixture
def gated_app(make_app: Callable[..., Flask]) -> Flask:
    return make_app(handlers_dir=BATCHING_HANDLERS)


@pytest.fixture
def gated(gated_app: Flask) -> Iterator[ModuleType]:
    """The Gated handler module, its records emptied and its gate open afterwards."""
    runtime = get_state(gated_app).registry.get("Gated")
    assert runtime is not None
    module = sys.modules[runtime.spec.predict.__module__]
    module.CALLS.clear()
    while module.ENTERED.acquire(blocking=False):
        pass
    yield module
    module.GATE.set()


def _post(app: Flask, model: str, payload: Any) -> tuple[int, Any, dict[str, str]]:
    response = app.test_client().post(f"/v1/{model}", json=payload)
    return response.status_code, response.get_json(), dict(response.headers)


def test_concurrent_http_requests_are_answered_individually_from_one_batch(
    gated_app: Flask, gated: ModuleType, pool: ThreadPoolExecutor
) -> None:
    gated.GATE.clear()
    first = pool.submit(_post, gated_app, "Gated", {"x": 1})
    assert gated.ENTERED.acquire(timeout=5)
    batcher = get_state(gated_app).inference.batcher_for(get_state(gated_app).registry.get("Gated"))
    queued = []
    for x in (2, -1, 3):
        queued.append(pool.submit(_post, gated_app, "Gated", {"x": x}))
        _wait_for_depth(batcher, len(queued))
    gated.GATE.set()

    assert first.result(5)[:2] == (200, {"result": 2})
    (ok_status, ok_body, _), (bad_status, bad_body, _), (other_status, other_body, _) = [f.result(5) for f in queued]
    assert (ok_status, ok_body) == (200, {"result": 4})
    assert (other_status, other_body) == (200, {"result": 6})
    assert bad_status == 400
    assert bad_body["message"] == "x must not be negative"
    # One call alone, one batch of three that failed, then its items one by one.
    assert gated.CALLS == [1, 3, 1, 1, 1]


def test_overloaded_over_http_is_a_json_503_with_retry_after(
    make_app: Callable[..., Flask], pool: ThreadPoolExecutor
) -> None:
    app = make_app(handlers_dir=BATCHING_HANDLERS, batch_queue_limit=1)
    runtime = get_state(app).registry.get("Gated")
    assert runtime is not None
    module = sys.modules[runtime.spec.predict.__module__]
    module.GATE.clear()
    try:
        first = pool.submit(_post, app, "Gated", {"x": 1})
        assert module.ENTERED.acquire(timeout=5)
        batcher = get_state(app).inference.batcher_for(runtime)
        second = pool.submit(_post, app, "Gated", {"x": 2})
        _eventually(lambda: batcher.queue_depth() == 1)

        status, body, headers = _post(app, "Gated", {"x": 3})
    finally:
        module.GATE.set()

    assert status == 503
    assert body["code"] == "overloaded"
    assert headers["Retry-After"] == "1"
    assert first.result(5)[0] == 200
    assert second.result(5)[0] == 200


@pytest.mark.parametrize(
    ("payload", "status"), [({"x": 5}, 200), ({"x": "five"}, 400)], ids=["submitted", "rejected-before-model"]
)
def test_every_announced_request_is_accounted_for(
    gated_app: Flask, gated: ModuleType, payload: dict[str, Any], status: int
) -> None:
    runtime = get_state(gated_app).registry.get("Gated")
    batcher = get_state(gated_app).inference.batcher_for(runtime)

    assert _post(gated_app, "Gated", payload)[0] == status
    assert batcher.arriving() == 0


def test_models_without_predict_batch_are_called_directly(gated_app: Flask) -> None:
    runtime = get_state(gated_app).registry.get("Single")
    assert runtime is not None

    assert get_state(gated_app).inference.batcher_for(runtime) is None
    assert _post(gated_app, "Single", {})[:2] == (200, {"result": "ok"})


@pytest.mark.parametrize("batching", [True, False], ids=["on", "off"])
def test_the_batching_setting_decides_whether_the_inference_owns_batchers(batching: bool) -> None:
    assert (create_inference(Settings(batching=batching)).batchers is not None) is batching


def test_with_batching_off_requests_still_work(make_app: Callable[..., Flask]) -> None:
    app = make_app(handlers_dir=BATCHING_HANDLERS, batching=False)

    assert _post(app, "Gated", {"x": 4})[:2] == (200, {"result": 8})


class BrokenObserver:
    """An observer whose every call fails, like metrics on a full disk."""

    def observe_batch(self, model: str, size: int, seconds: float) -> None:
        raise OSError("no space left on device")

    def set_queue_depth(self, model: str, depth: int) -> None:
        raise OSError("no space left on device")


def test_a_failing_observer_never_stops_the_answers(pool: ThreadPoolExecutor, caplog: pytest.LogCaptureFixture) -> None:
    model = FakeModel()
    limits = BatchLimits(max_batch_size=8, max_latency_ms=0, queue_limit=8)
    batcher = Batcher(_runtime("Observed"), limits, model, observer=BrokenObserver())
    first = _hold_model(model, batcher, pool)
    queued = _queue(batcher, pool, [1, 2])
    model.gate.set()

    assert first.result(5) == 0
    assert [future.result(5) for future in queued] == [2, 4]
    # The runner thread is still there for the next batch.
    again = _hold_model(model, batcher, pool)
    (late,) = _queue(batcher, pool, [5])
    model.gate.set()
    assert again.result(5) == 0
    assert late.result(5) == 10
    assert "could not record" in caplog.text
