"""`Inference` owns the batchers: single predictions batch, a failed batch falls back per item."""

from __future__ import annotations

import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from serving.errors import InputRejected
from serving.runtime.batching import Batchers
from serving.runtime.handlers import load_handler
from serving.runtime.inference import Inference
from serving.runtime.registry import ModelRuntime
from serving.runtime.timebudget import TimeBudget
from tests.servers import run_python

# Doubles `x`; a negative `x` is unusable, and in a batch it spoils the vectorised call.
# Each call records its size and the thread it ran on; GATE holds every call.
RECORDER = """
import threading

from serving.kit import InvalidInput

NAME = "Recorder"
INPUT_SCHEMA = {"type": "object"}
BATCH = {"max_batch_size": 8, "max_latency_ms": 0}

GATE = threading.Event()
GATE.set()
ENTERED = threading.Semaphore(0)
CALLS = []  # (size, thread ident) of each model call, in order


def _enter(size):
    ENTERED.release()
    assert GATE.wait(10)
    CALLS.append((size, threading.get_ident()))


def predict(model, payload):
    _enter(1)
    if payload["x"] < 0:
        raise InvalidInput("x must not be negative")
    return payload["x"] * 2


def predict_batch(model, payloads):
    _enter(len(payloads))
    if any(payload["x"] < 0 for payload in payloads):
        raise ValueError("a negative x spoils the whole batch")
    return [payload["x"] * 2 for payload in payloads]
"""

SINGLE = """
NAME = "Single"
INPUT_SCHEMA = {"type": "object"}


def predict(model, payload):
    return "ok"
"""


def _runtime(directory: Path, name: str, source: str) -> ModelRuntime:
    path = directory / f"{name}.py"
    path.write_text(textwrap.dedent(source))
    runtime = ModelRuntime(load_handler(path))
    runtime.ensure_loaded()
    return runtime


@pytest.fixture
def recorder(tmp_path: Path) -> Iterator[tuple[ModelRuntime, ModuleType]]:
    runtime = _runtime(tmp_path, "recorder", RECORDER)
    module = sys.modules[runtime.spec.predict.__module__]
    yield runtime, module
    module.GATE.set()


def _inference(*, batching: bool = True) -> Inference:
    return Inference(
        validate_output=True,
        budget=TimeBudget(default_timeout_s=0, max_abandoned=2),
        batchers=Batchers() if batching else None,
    )


def _eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.002)


def test_each_batching_model_gets_one_batcher_owned_by_the_inference(
    tmp_path: Path, recorder: tuple[ModelRuntime, ModuleType]
) -> None:
    runtime, _ = recorder
    single = _runtime(tmp_path, "single", SINGLE)
    inference = _inference()

    batcher = inference.batcher_for(runtime)

    assert batcher is not None
    assert inference.batcher_for(runtime) is batcher
    assert inference.batcher_for(single) is None
    assert _inference(batching=False).batcher_for(runtime) is None


def test_a_failed_batch_falls_back_item_by_item_on_the_runner_without_queueing_again(
    recorder: tuple[ModelRuntime, ModuleType],
) -> None:
    runtime, module = recorder
    inference = _inference()
    batcher = inference.batcher_for(runtime)
    assert batcher is not None
    with ThreadPoolExecutor(max_workers=4) as pool:
        module.GATE.clear()
        first = pool.submit(inference.predict, runtime, {"x": 1})
        assert module.ENTERED.acquire(timeout=5)
        queued: list[Future[Any]] = []
        for x in (2, -1, 3):  # one by one, so the queue keeps this order
            queued.append(pool.submit(inference.predict, runtime, {"x": x}))
            _eventually(lambda: batcher.queue_depth() == len(queued))
        module.GATE.set()

        assert first.result(5) == 2
        good, bad, other = queued
        assert good.result(5) == 4
        assert other.result(5) == 6
        with pytest.raises(InputRejected, match="x must not be negative"):
            bad.result(5)

    sizes = [size for size, _ in module.CALLS]
    threads = [thread for _, thread in module.CALLS]
    # One call alone, the batch of three that failed, then its three items, all on the
    # runner thread that ran the batch: none of them went back into the queue.
    assert sizes == [1, 3, 1, 1, 1]
    assert len(set(threads[1:])) == 1
    assert threads[1] != threads[0]
    assert batcher.queue_depth() == 0


def test_an_announced_arrival_is_taken_by_its_prediction_or_withdrawn_once(
    recorder: tuple[ModelRuntime, ModuleType],
) -> None:
    runtime, _ = recorder
    inference = _inference()
    batcher = inference.batcher_for(runtime)
    assert batcher is not None

    taken = inference.announce(runtime)
    withdrawn = inference.announce(runtime)
    assert taken is not None
    assert withdrawn is not None
    assert batcher.arriving() == 2

    assert inference.predict(runtime, {"x": 4}, arrival=taken) == 8
    assert batcher.arriving() == 1
    taken.withdraw()  # already taken: the count is not touched again
    assert batcher.arriving() == 1
    withdrawn.withdraw()
    withdrawn.withdraw()
    assert batcher.arriving() == 0


def test_models_that_cannot_batch_are_never_announced(
    tmp_path: Path, recorder: tuple[ModelRuntime, ModuleType]
) -> None:
    runtime, _ = recorder
    single = _runtime(tmp_path, "single", SINGLE)

    assert _inference().announce(single) is None
    assert _inference(batching=False).announce(runtime) is None
    assert _inference(batching=False).predict(runtime, {"x": 2}) == 4


def test_an_arrival_for_another_batcher_is_not_taken(tmp_path: Path, recorder: tuple[ModelRuntime, ModuleType]) -> None:
    runtime, _ = recorder
    inference, other = _inference(), _inference()
    arrival = other.announce(runtime)
    assert arrival is not None

    assert inference.predict(runtime, {"x": 1}, arrival=arrival) == 2
    other_batcher = other.batcher_for(runtime)
    assert other_batcher is not None
    assert other_batcher.arriving() == 1
    arrival.withdraw()
    assert other_batcher.arriving() == 0


def test_the_lone_call_runs_on_the_callers_thread(recorder: tuple[ModelRuntime, ModuleType]) -> None:
    runtime, module = recorder

    assert _inference().predict(runtime, {"x": 5}) == 10
    assert module.CALLS[-1] == (1, threading.get_ident())


def test_the_runtime_imports_no_web_framework() -> None:
    code = (
        "import sys\n"
        "import serving.runtime.inference, serving.runtime.batching, serving.runtime.timebudget\n"
        "import serving.runtime.registry, serving.runtime.validation, serving.kit.forking\n"
        "web = ('flask', 'werkzeug', 'serving.http')\n"
        "print(sorted(m for m in sys.modules if m.startswith(web)))\n"
    )

    result = run_python(code, timeout=60)

    assert result.stdout.strip() == "[]"


# --- admit, then prepare: every item of a request admitted before any is prepared ---

STAGED = """
from serving.errors import TooManyPixels
from serving.kit import InvalidInput

NAME = "Staged"
INPUT_SCHEMA = {"type": "object"}
EVENTS = []  # (stage, x) in the order the stages ran


def admit(model, payload):
    EVENTS.append(("admit", payload["x"]))
    if payload.get("huge"):
        raise TooManyPixels("the request's items are over its allowance")
    if payload["x"] < 0:
        raise InvalidInput("x must not be negative")
    return ("admitted", payload["x"])


def prepare(model, admitted):
    assert admitted[0] == "admitted"
    EVENTS.append(("prepare", admitted[1]))
    if admitted[1] == 13:
        raise InvalidInput("13 cannot be prepared")
    return ("prepared", admitted[1])


def predict(model, prepared):
    assert prepared[0] == "prepared"
    return prepared[1] * 2


def predict_batch(model, items):
    EVENTS.append(("batch", len(items)))
    return [predict(model, item) for item in items]
"""


@pytest.fixture
def staged(tmp_path: Path) -> tuple[ModelRuntime, ModuleType]:
    runtime = _runtime(tmp_path, "staged", STAGED)
    return runtime, sys.modules[runtime.spec.predict.__module__]


def test_every_item_is_admitted_before_any_is_prepared(staged: tuple[ModelRuntime, ModuleType]) -> None:
    runtime, module = staged
    outcomes = _inference().predict_many(runtime, [{"x": 1}, {"x": -1}, {"x": 13}, {"x": 4}])

    assert outcomes[0] == 2
    assert outcomes[3] == 8
    assert isinstance(outcomes[1], InputRejected)
    assert "negative" in outcomes[1].message
    assert isinstance(outcomes[2], InputRejected)
    assert "13 cannot" in outcomes[2].message
    assert module.EVENTS == [
        ("admit", 1), ("admit", -1), ("admit", 13), ("admit", 4),
        ("prepare", 1), ("prepare", 13), ("prepare", 4),  # not the item refused at admission
        ("batch", 2),
    ]  # fmt: skip


def test_a_request_wide_refusal_at_admission_prepares_nothing(staged: tuple[ModelRuntime, ModuleType]) -> None:
    from serving.errors import TooManyPixels

    runtime, module = staged
    with pytest.raises(TooManyPixels):
        _inference().predict_many(runtime, [{"x": 1}, {"x": 2, "huge": True}, {"x": 3}])
    assert module.EVENTS == [("admit", 1), ("admit", 2)]


@pytest.mark.parametrize("batching", [True, False], ids=["batched", "alone"])
def test_a_single_prediction_is_admitted_then_prepared(staged: tuple[ModelRuntime, ModuleType], batching: bool) -> None:
    runtime, module = staged
    assert _inference(batching=batching).predict(runtime, {"x": 5}) == 10
    assert module.EVENTS == [("admit", 5), ("prepare", 5)]
    with pytest.raises(InputRejected, match="negative"):
        _inference(batching=batching).predict(runtime, {"x": -5})
