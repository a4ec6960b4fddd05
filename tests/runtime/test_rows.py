"""Bulk work: requests of more rows than one batch take a worker's bulk slot; the rest wait their turn."""

from __future__ import annotations

import sys
import textwrap
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from serving.errors import ClientGone, GatewayTimeout
from serving.runtime.handlers import load_handler
from serving.runtime.inference import Inference
from serving.runtime.registry import ModelRuntime
from serving.runtime.request_scope import RequestScope, opened_scope
from serving.runtime.rows import RowFailed, predict_rows
from serving.runtime.timebudget import TimeBudget

# Doubles `x` in batches of at most 4; a negative `x` is unusable. GATE holds every call;
# CALLS records which request (its `tag`) each call served, in order.
COUNTER = """
import threading

from serving.kit import InvalidInput

NAME = "Counter"
INPUT_SCHEMA = {"type": "object"}
BATCH = {"max_batch_size": 4, "max_latency_ms": 0}

GATE = threading.Event()
GATE.set()
ENTERED = threading.Semaphore(0)
CALLS = []


def predict(model, payload):
    return predict_batch(model, [payload])[0]


def predict_batch(model, payloads):
    ENTERED.release()
    assert GATE.wait(10)
    CALLS.append(payloads[0]["tag"])
    if any(payload["x"] < 0 for payload in payloads):
        raise InvalidInput("x must not be negative")
    return [payload["x"] * 2 for payload in payloads]
"""


@pytest.fixture
def counter(tmp_path: Path) -> Iterator[tuple[ModelRuntime, ModuleType]]:
    path = tmp_path / "counter.py"
    path.write_text(textwrap.dedent(COUNTER))
    runtime = ModelRuntime(load_handler(path))
    runtime.ensure_loaded()
    module = sys.modules[runtime.spec.predict.__module__]
    yield runtime, module
    module.GATE.set()


def _inference(slots: int = 1, timeout_s: float = 0) -> Inference:
    return Inference(
        validate_output=True,
        budget=TimeBudget(default_timeout_s=timeout_s, max_abandoned=2),
        bulk_slots=threading.BoundedSemaphore(slots),
    )


def _rows(tag: str, count: int, x: int = 1) -> list[dict[str, object]]:
    return [{"tag": tag, "x": x} for _ in range(count)]


def _running(pool: ThreadPoolExecutor, inference: Inference, model: tuple[ModelRuntime, ModuleType], tag: str) -> Any:
    """A bulk request of 10 rows submitted to `pool`, once its first call holds the (gated) model."""
    runtime, module = model
    module.GATE.clear()
    running = pool.submit(predict_rows, inference, runtime, _rows(tag, 10))
    assert module.ENTERED.acquire(timeout=5)
    return running


def test_a_bulk_request_beyond_the_slots_waits_for_the_running_one_to_finish(
    counter: tuple[ModelRuntime, ModuleType],
) -> None:
    runtime, module = counter
    inference = _inference(slots=1)
    with ThreadPoolExecutor(2) as pool:
        first = _running(pool, inference, counter, "first")
        second = pool.submit(predict_rows, inference, runtime, _rows("second", 10))

        assert not module.ENTERED.acquire(timeout=0.3)  # the second has not started a chunk
        module.GATE.set()

        assert first.result(10) == [2] * 10
        assert second.result(10) == [2] * 10
    assert module.CALLS == ["first"] * 3 + ["second"] * 3  # chunks of 4, 4, 2, one request after the other


def test_a_request_of_one_batch_takes_no_slot(counter: tuple[ModelRuntime, ModuleType]) -> None:
    runtime, module = counter
    inference = _inference(slots=1)
    with ThreadPoolExecutor(2) as pool:
        bulk = _running(pool, inference, counter, "bulk")
        small = pool.submit(predict_rows, inference, runtime, _rows("small", 4))

        assert module.ENTERED.acquire(timeout=5)  # it runs beside the bulk request
        module.GATE.set()
        assert small.result(10) == [2] * 4
        assert bulk.result(10) == [2] * 10


def test_a_failing_request_gives_its_slot_back_at_once(counter: tuple[ModelRuntime, ModuleType]) -> None:
    runtime, _ = counter
    inference = _inference(slots=1)
    assert inference.bulk_slots is not None

    with pytest.raises(RowFailed) as failed:
        predict_rows(inference, runtime, _rows("bad", 4) + _rows("bad", 6, x=-1))

    assert failed.value.index == 4
    assert inference.bulk_slots.acquire(blocking=False)  # while the failure is still held


def _holder(directory: Path) -> tuple[ModelRuntime, ModuleType]:
    """Another model of the same code, with no time budget: it holds the slot as long as its GATE."""
    path = directory / "holder.py"
    path.write_text(textwrap.dedent(COUNTER).replace('NAME = "Counter"', 'NAME = "Holder"\nTIMEOUT_S = 0'))
    runtime = ModelRuntime(load_handler(path))
    runtime.ensure_loaded()
    return runtime, sys.modules[runtime.spec.predict.__module__]


@pytest.mark.parametrize(
    ("scope", "timeout_s", "error"),
    [
        pytest.param(RequestScope(client_gone=lambda: True), 0, ClientGone, id="client-gone"),
        pytest.param(RequestScope(), 0.2, GatewayTimeout, id="budget-spent-waiting"),
    ],
)
def test_a_waiting_request_stops_when_nobody_waits_for_it(
    tmp_path: Path,
    counter: tuple[ModelRuntime, ModuleType],
    scope: RequestScope,
    timeout_s: float,
    error: type[Exception],
) -> None:
    runtime, module = counter
    holder, held = _holder(tmp_path)
    inference = _inference(slots=1, timeout_s=timeout_s)  # Counter's budget; the holder has none
    try:
        with ThreadPoolExecutor(1) as pool:
            running = _running(pool, inference, (holder, held), "running")

            with opened_scope(scope), pytest.raises(error):
                predict_rows(inference, runtime, _rows("waiting", 10))

            held.GATE.set()
            assert running.result(10) == [2] * 10
    finally:
        held.GATE.set()
    assert module.CALLS == []
