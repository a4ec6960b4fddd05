"""A job's timeout is the requests' time budget: same call threads, its own deadline, slots held."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from serving.config.settings import Settings
from serving.jobs.records import Job, JobStatus, new_job_id
from serving.jobs.runner import JobRunner, LeaseKeeper
from serving.jobs.sql_engine import sqlite_url
from serving.jobs.sql_store import SqlJobStore
from serving.jobs.store import Claim
from serving.runtime.handlers import discover_handlers
from serving.runtime.inference import Inference, create_inference
from serving.runtime.registry import Registry
from tests.conftest import FIXTURE_HANDLERS

JOB_HANDLERS = FIXTURE_HANDLERS / "jobs"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlJobStore]:
    job_store = SqlJobStore(sqlite_url(tmp_path / "jobs.sqlite"), data_dir=tmp_path)
    job_store.prepare()
    yield job_store
    job_store.close()


@pytest.fixture
def make_runner(store: SqlJobStore) -> Iterator[Callable[..., tuple[JobRunner, Inference]]]:
    leases: list[LeaseKeeper] = []

    def build(*, jobs_timeout_s: float = 30.0, **settings: Any) -> tuple[JobRunner, Inference]:
        inference = create_inference(Settings(**settings))
        keeper = LeaseKeeper(store, 30.0)
        leases.append(keeper)
        registry = Registry(discover_handlers(JOB_HANDLERS))
        runner = JobRunner(store, registry, inference, keeper, default_timeout_s=jobs_timeout_s, slots=1)
        return runner, inference

    yield build
    for keeper in leases:
        keeper.stop()


def _claim(store: SqlJobStore, model: str, payload: Any) -> Claim:
    now = time.time()
    job = Job(
        id=new_job_id(),
        model=model,
        status=JobStatus.QUEUED,
        payload=payload,
        created_at=now,
        updated_at=now,
        max_attempts=3,
    )
    store.create(job)
    claim = store.claim(job.id, "test-worker", 30.0, now)
    assert isinstance(claim, Claim)
    return claim


def _run(runner: JobRunner, claim: Claim) -> Job:
    assert runner.slots.acquire(timeout=5)  # as the dispatchers do: the slot goes to the call
    job = runner.run(claim)
    assert job is not None
    return job


def test_an_overrunning_job_fails_at_its_timeout_and_keeps_its_slot_until_the_call_ends(
    store: SqlJobStore, make_runner: Callable[..., tuple[JobRunner, Inference]]
) -> None:
    runner, inference = make_runner(max_abandoned_calls=1)

    job = _run(runner, _claim(store, "Sleepy", {"seconds": 1.5}))  # Sleepy's TIMEOUT_S is 0.5

    assert job.status is JobStatus.FAILED
    assert job.error == {"code": "timeout", "message": "The job did not finish within 0.5 s"}
    assert not runner.slots.acquire(blocking=False)  # the call still runs and holds it
    assert runner.slots.acquire(timeout=10)  # given back when the call really ends
    runner.slots.release()
    # The slots bound late job calls: they never degrade the model for requests.
    assert not inference.budget.degraded("Sleepy")


def test_a_job_is_bounded_by_its_own_timeout_not_by_the_request_budget(
    store: SqlJobStore, make_runner: Callable[..., tuple[JobRunner, Inference]], tmp_path: Path
) -> None:
    runner, _ = make_runner(predict_timeout_s=0.1, jobs_timeout_s=10.0)
    payload = {"tag": "slow", "log": str(tmp_path / "calls.log"), "seconds": 0.4}

    job = _run(runner, _claim(store, "Gated", payload))

    assert job.status is JobStatus.SUCCEEDED
    assert job.result["tag"] == "slow"


def test_the_job_call_runs_on_a_call_thread_of_the_shared_budget(
    store: SqlJobStore, make_runner: Callable[..., tuple[JobRunner, Inference]]
) -> None:
    runner, _ = make_runner()
    before = {thread.ident for thread in threading.enumerate()}

    job = _run(runner, _claim(store, "Echo", {"text": "hi"}))

    assert job.status is JobStatus.SUCCEEDED
    new = [t.name for t in threading.enumerate() if t.ident not in before]
    assert any(name.startswith("model-call") for name in new)
