"""The per-call time budget: 504 on overrun, bounded abandoned calls, recovery, no lost threads."""

from __future__ import annotations

import contextvars
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask

from serving.errors import GatewayTimeout, ModelNotServing
from serving.runtime.handlers import discover_handlers
from serving.runtime.timebudget import TimeBudget, _CallThreads
from tests.conftest import FIXTURE_HANDLERS
from tests.servers import PROJECT_ROOT

BUDGET_HANDLERS = FIXTURE_HANDLERS / "budget"


def _wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def test_a_call_within_budget_returns_its_result() -> None:
    budget = TimeBudget(default_timeout_s=1.0, max_abandoned=2)

    assert budget.call("M", None, lambda: 42) == 42


def test_a_call_that_raises_raises_in_the_caller() -> None:
    budget = TimeBudget(default_timeout_s=1.0, max_abandoned=2)

    def boom() -> None:
        raise KeyError("from the model")

    with pytest.raises(KeyError, match="from the model"):
        budget.call("M", None, boom)


def test_overrun_is_a_504_at_the_deadline_and_the_call_runs_on() -> None:
    budget = TimeBudget(default_timeout_s=5.0, max_abandoned=2)
    release = threading.Event()
    finished = threading.Event()

    def stuck() -> str:
        release.wait(10)
        finished.set()
        return "late"

    with pytest.raises(GatewayTimeout) as caught:
        budget.call("M", 0.2, stuck)  # the model's TIMEOUT_S wins over the default

    assert caught.value.status == 504
    assert caught.value.body()["timeout_s"] == 0.2
    # At the deadline, not at the call's end: the call is still held by `release`.
    assert not finished.is_set()
    assert budget.abandoned("M") == 1
    release.set()
    assert finished.wait(5)
    _wait_until(lambda: budget.abandoned("M") == 0)


def test_a_call_that_ends_as_its_caller_gives_up_still_delivers_its_result() -> None:
    # The race between the deadline and the call's end, made deterministic: the caller's
    # wait has timed out, but the call finished before the caller could abandon it.
    threads = _CallThreads("race")
    release = threading.Event()
    thread = threads.take()
    thread.run(lambda: release.wait(5) and "on time")

    assert not thread.wait(0.05)
    release.set()
    _wait_until(lambda: thread.finished)
    late: list[str] = []

    assert threads.abandon(thread, lambda: late.append("late")) is False
    assert thread.wait(1.0)
    assert thread.result == "on time"
    assert late == []


def test_an_abandoned_call_reports_its_end_and_its_thread_serves_again() -> None:
    threads = _CallThreads("abandoned")
    release = threading.Event()
    thread = threads.take()
    thread.run(lambda: release.wait(5))
    assert not thread.wait(0.05)
    ended = threading.Event()

    assert threads.abandon(thread, ended.set) is True
    release.set()

    assert ended.wait(5)
    _wait_until(lambda: thread in threads._idle)  # back among the idle threads
    assert threads.take() is thread


def test_too_many_abandoned_calls_degrade_only_that_model_until_they_end() -> None:
    budget = TimeBudget(default_timeout_s=0.1, max_abandoned=2)
    release = threading.Event()
    started_calls: list[int] = []

    def stuck() -> None:
        started_calls.append(1)
        release.wait(10)

    for _ in range(2):
        with pytest.raises(GatewayTimeout):
            budget.call("Stuck", None, stuck)
    with pytest.raises(ModelNotServing) as degraded:
        budget.call("Stuck", None, stuck)
    other = budget.call("Other", None, lambda: "fine")

    assert degraded.value.status == 503
    assert degraded.value.body()["status"] == "degraded"
    assert degraded.value.headers["Retry-After"] == "1"
    assert len(started_calls) == 2  # the refused call never started
    assert other == "fine"
    release.set()
    _wait_until(lambda: not budget.degraded("Stuck"))
    assert budget.call("Stuck", None, lambda: "recovered") == "recovered"


def test_without_degrade_overruns_neither_count_nor_refuse() -> None:
    # The job runner's use: its slots bound the calls left running late.
    budget = TimeBudget(default_timeout_s=0.1, max_abandoned=1)
    release = threading.Event()
    ended = threading.Semaphore(0)

    def stuck() -> None:
        release.wait(10)
        ended.release()

    for _ in range(2):
        with pytest.raises(GatewayTimeout):
            budget.call("Job", None, stuck, degrade=False)

    assert budget.abandoned("Job") == 0
    assert not budget.degraded("Job")
    release.set()
    assert ended.acquire(timeout=5)
    assert ended.acquire(timeout=5)


def test_a_call_nested_in_a_budgeted_call_runs_directly_within_the_outer_deadline() -> None:
    budget = TimeBudget(default_timeout_s=0.05, max_abandoned=2)

    def outer() -> tuple[int, int]:
        inner_thread = budget.call("Inner", None, lambda: (time.sleep(0.2), threading.get_ident())[1])
        return threading.get_ident(), inner_thread

    outer_thread, inner_thread = budget.call("Outer", 5.0, outer)

    assert inner_thread == outer_thread != threading.get_ident()
    assert budget.abandoned("Inner") == 0


def test_zero_budget_runs_on_the_callers_thread() -> None:
    budget = TimeBudget(default_timeout_s=0, max_abandoned=2)

    assert budget.call("M", None, threading.get_ident) == threading.get_ident()


def test_a_model_whose_timeout_is_zero_runs_on_the_callers_thread_despite_a_default() -> None:
    budget = TimeBudget(default_timeout_s=30.0, max_abandoned=2)

    assert budget.call("M", 0.0, threading.get_ident) == threading.get_ident()
    assert budget.call("M", None, threading.get_ident) != threading.get_ident()


def test_the_greeting_and_iris_models_declare_no_budget_and_digits_keeps_the_default() -> None:
    specs = {spec.name: spec for spec in discover_handlers(PROJECT_ROOT / "handlers")}

    assert specs["XXXModel"].timeout_s == 0.0
    assert specs["Iris"].timeout_s == 0.0
    assert specs["Digits"].timeout_s is None


def test_the_callers_context_follows_the_call() -> None:
    budget = TimeBudget(default_timeout_s=1.0, max_abandoned=2)
    request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id")
    request_id.set("req-7")

    assert budget.call("M", None, request_id.get) == "req-7"


def test_threads_are_reused_and_bounded_by_concurrency() -> None:
    budget = TimeBudget(default_timeout_s=2.0, max_abandoned=2)
    before = set(threading.enumerate())

    with ThreadPoolExecutor(max_workers=4) as callers:
        results = list(callers.map(lambda i: budget.call("M", None, lambda: time.sleep(0.005) or i), range(200)))

    new = [t for t in threading.enumerate() if t not in before and t.name.startswith("model-call")]
    assert results == list(range(200))
    assert 1 <= len(new) <= 4
    assert all(t.daemon for t in new)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_gets_fresh_threads() -> None:
    budget = TimeBudget(default_timeout_s=2.0, max_abandoned=2)
    assert budget.call("M", None, lambda: "parent") == "parent"  # the parent now has a thread

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the parent's thread does not exist here
        try:
            answer = budget.call("M", None, lambda: "child")
            os.write(write, answer.encode())
        finally:
            os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)

    assert os.read(read, 16) == b"child"
    assert status == 0


# --- through the app: the handler's TIMEOUT_S, JSON errors, other models unaffected ---


@pytest.fixture
def budget_app(make_app: Callable[..., Flask]) -> Flask:
    return make_app(handlers_dir=BUDGET_HANDLERS, max_abandoned_calls=2)


def test_slow_model_answers_504_json_and_the_app_keeps_serving(budget_app: Flask) -> None:
    client = budget_app.test_client()

    budget: Any = budget_app.extensions["serving"].inference.budget

    slow = client.post("/v1/Slow", json={"seconds": 10})
    # Answered at the deadline: the 10 s call is still running, abandoned, when the 504 is in.
    still_running = budget.abandoned("Slow")
    quick = client.post("/v1/Quick", json={})

    assert slow.status_code == 504
    assert slow.get_json()["code"] == "timeout"
    assert "0.5 s" in slow.get_json()["message"]
    assert still_running == 1
    assert quick.status_code == 200


def test_slow_model_within_budget_succeeds(budget_app: Flask) -> None:
    response = budget_app.test_client().post("/v1/Slow", json={"seconds": 0.01})

    assert response.status_code == 200
    assert response.get_json() == {"result": {"slept": 0.01}}


def test_degraded_model_answers_503_and_recovers(budget_app: Flask) -> None:
    client = budget_app.test_client()
    budget: Any = budget_app.extensions["serving"].inference.budget

    statuses = [client.post("/v1/Slow", json={"seconds": 1.5}).status_code for _ in range(3)]
    quick = client.post("/v1/Quick", json={})
    _wait_until(lambda: not budget.degraded("Slow"))
    after = client.post("/v1/Slow", json={"seconds": 0})

    assert statuses == [504, 504, 503]
    assert quick.status_code == 200
    assert after.status_code == 200


def test_batch_overrun_is_one_504_not_a_retry_per_item(budget_app: Flask) -> None:
    inference = budget_app.extensions["serving"].inference
    runtime = budget_app.extensions["serving"].registry.get("Slow")

    budget: Any = inference.budget

    with pytest.raises(GatewayTimeout):
        inference.predict_many(runtime, [{"seconds": 10}, {"seconds": 10}, {"seconds": 10}])

    # One batch call overran and was abandoned; a retry per item would have left more.
    assert budget.abandoned("Slow") == 1


@pytest.mark.e2e
def test_overruns_on_real_gunicorn_leave_the_worker_serving(start_gunicorn: Any) -> None:
    """One worker, so every request below lands on the same process: it never restarts."""
    env = {"HANDLERS_DIR": str(BUDGET_HANDLERS), "GUNICORN_WORKERS": "1", "MAX_ABANDONED_CALLS": "2"}
    with start_gunicorn(env) as server:
        pids_before = _children(server.process.pid)
        slow = [requests.post(server.url + "/v1/Slow", json={"seconds": 4}, timeout=10) for _ in range(3)]
        quick = requests.post(server.url + "/v1/Quick", json={}, timeout=10)
        health = requests.get(server.url + "/healthz", timeout=10)
        _wait_until(lambda: requests.post(server.url + "/v1/Slow", json={"seconds": 0}, timeout=10).ok, 15)
        pids_after = _children(server.process.pid)

    assert [r.status_code for r in slow] == [504, 504, 503]
    assert all(r.elapsed.total_seconds() < 3 for r in slow)  # answered at the deadline, not after the call
    assert slow[2].json()["status"] == "degraded"
    assert quick.status_code == 200
    assert health.status_code == 200
    assert pids_after == pids_before
    assert "Traceback" not in server.log()


def _children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
