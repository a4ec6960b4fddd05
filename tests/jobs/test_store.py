"""The JobStore contract, on SQLite, PostgreSQL and the Firestore emulator alike."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from serving.jobs.records import Job, JobStatus, WebhookState, new_job_id, request_fingerprint
from serving.jobs.sql_schema import SCHEMA
from serving.jobs.sql_store import SqlJobStore
from serving.jobs.store import Claim, IdempotencyConflict, JobStore
from tests.jobs.conftest import make_store

LEASE = 30.0


def new_job(
    *, payload: Any = None, key: str | None = None, webhook: str | None = None, max_attempts: int = 3, now: float = 0
) -> Job:
    now = now or time.time()
    payload = {"text": "hi"} if payload is None else payload
    return Job(
        id=new_job_id(),
        model="Echo",
        status=JobStatus.QUEUED,
        payload=payload,
        created_at=now,
        updated_at=now,
        max_attempts=max_attempts,
        idempotency_key=key,
        request_hash=request_fingerprint("Echo", payload, webhook),
        webhook_url=webhook,
    )


def test_created_job_reads_back_with_its_payload(store: JobStore) -> None:
    job = new_job(payload={"nested": [[1, 2], [3]], "text": "ünïcode"})

    stored, created = store.create(job)
    found = store.get(job.id)

    assert created
    assert stored.id == job.id
    assert found is not None
    assert found.payload == {"nested": [[1, 2], [3]], "text": "ünïcode"}
    assert found.status is JobStatus.QUEUED
    assert found.attempts == 0
    assert store.get(new_job_id()) is None


def test_idempotency_key_returns_the_first_job_and_refuses_a_different_request(store: JobStore) -> None:
    first, created = store.create(new_job(key="order-42"))

    again, created_again = store.create(new_job(key="order-42"))
    with pytest.raises(IdempotencyConflict) as info:
        store.create(new_job(key="order-42", payload={"text": "something else"}))

    assert created
    assert not created_again
    assert again.id == first.id
    assert info.value.job.id == first.id


def test_claim_takes_the_oldest_queued_job_once(store: JobStore) -> None:
    now = time.time()
    older = new_job(now=now - 10)
    newer = new_job(now=now - 5)
    store.create(newer)
    store.create(older)

    first = store.claim_next("w1", LEASE, now)
    second = store.claim_next("w2", LEASE, now)
    third = store.claim_next("w3", LEASE, now)

    assert first is not None
    assert second is not None
    assert [first.job_id, second.job_id] == [older.id, newer.id]
    assert third is None
    assert first.job.status is JobStatus.RUNNING
    assert first.job.attempts == 1
    assert first.token != second.token


def _claim_everything(store: JobStore, claimers: int, lease: float) -> list[str]:
    """The job ids `claimers` threads got, each claiming until nothing is left."""
    claimed: list[str] = []
    lock = threading.Lock()

    def claimer(name: str) -> None:
        while (claim := store.claim_next(name, lease, time.time())) is not None:
            with lock:
                claimed.append(claim.job_id)

    threads = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(claimers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return claimed


def test_concurrent_claims_never_hand_out_a_job_twice(store: JobStore) -> None:
    ids = {store.create(new_job())[0].id for _ in range(12)}

    claimed = _claim_everything(store, claimers=4, lease=LEASE)

    assert sorted(claimed) == sorted(ids)  # every job once, none twice


def test_many_claimers_on_a_short_lease_still_hand_out_each_job_once(store: JobStore) -> None:
    # Eight claimers all see the same oldest candidates. A claim must not wait on the
    # others' (the Firestore store once waited on locks: 8-26 s per claim on the
    # emulator, so a lease expired before it was written and the job went out twice).
    ids = {store.create(new_job())[0].id for _ in range(24)}

    claimed = _claim_everything(store, claimers=8, lease=5.0)

    assert sorted(claimed) == sorted(ids)


def test_finish_is_exactly_once_and_a_lost_claim_is_discarded(store: JobStore) -> None:
    store.create(new_job())
    now = time.time()
    stale = store.claim_next("w1", 1.0, now)
    assert stale is not None
    # The lease expires (the first worker froze or died); another worker takes over.
    fresh = store.claim_next("w2", LEASE, now + 5)
    assert fresh is not None
    assert fresh.job_id == stale.job_id

    late = store.finish(stale, JobStatus.SUCCEEDED, {"from": "stale"}, None, now + 6)
    won = store.finish(fresh, JobStatus.SUCCEEDED, {"from": "fresh"}, None, now + 7)
    again = store.finish(fresh, JobStatus.FAILED, None, {"code": "x", "message": "y"}, now + 8)

    assert late is None
    assert won is not None
    assert won.result == {"from": "fresh"}
    assert again is None
    final = store.get(stale.job_id)
    assert final is not None
    assert final.status is JobStatus.SUCCEEDED
    assert final.result == {"from": "fresh"}
    assert final.attempts == 2


def test_heartbeat_keeps_a_lease_and_reports_lost_claims(store: JobStore) -> None:
    store.create(new_job())
    store.create(new_job())
    now = time.time()
    kept = store.claim_next("w1", 2.0, now)
    canceled = store.claim_next("w1", 2.0, now)
    assert kept is not None
    assert canceled is not None
    store.cancel(canceled.job_id, now + 0.5)

    lost = store.heartbeat([kept, canceled], 10.0, now + 1)

    assert lost == {canceled.job_id}
    # Extended to now+1+10: not claimable at now+5 although the first lease said now+2.
    assert store.claim_next("w2", LEASE, now + 5) is None


def test_attempts_are_bounded_then_the_job_fails_with_a_message(store: JobStore) -> None:
    job = new_job(max_attempts=2)
    store.create(job)
    now = time.time()

    first = store.claim_next("w", 1.0, now)
    second = store.claim_next("w", 1.0, now + 2)  # the first process died: lease expired
    none_left = store.claim_next("w", 1.0, now + 4)  # the second one died too

    assert first is not None
    assert second is not None
    assert none_left is None
    final = store.get(job.id)
    assert final is not None
    assert final.status is JobStatus.FAILED
    assert final.attempts == 2
    assert final.error is not None
    assert final.error["code"] == "attempts_exhausted"


def test_claim_by_id_for_delivered_tasks(store: JobStore) -> None:
    job = new_job()
    store.create(job)
    now = time.time()

    claim = store.claim(job.id, "w1", LEASE, now)
    busy = store.claim(job.id, "w2", LEASE, now)
    unknown = store.claim(new_job_id(), "w2", LEASE, now)

    assert isinstance(claim, Claim)
    assert isinstance(busy, Job)
    assert busy.status is JobStatus.RUNNING
    assert unknown is None


def test_cancel_queued_running_and_finished(store: JobStore) -> None:
    queued = new_job()
    running = new_job()
    store.create(queued)
    store.create(running)
    now = time.time()
    claim = store.claim(running.id, "w", LEASE, now)
    assert isinstance(claim, Claim)

    canceled_queued = store.cancel(queued.id, now)
    canceled_running = store.cancel(running.id, now)
    twice = store.cancel(queued.id, now)
    discarded = store.finish(claim, JobStatus.SUCCEEDED, "late", None, now)

    assert canceled_queued is not None
    assert canceled_queued[1]
    assert canceled_queued[0].status is JobStatus.CANCELED
    assert canceled_running is not None
    assert canceled_running[1]
    assert twice is not None
    assert not twice[1]
    assert discarded is None  # the running call's result is thrown away
    final = store.get(running.id)
    assert final is not None
    assert final.status is JobStatus.CANCELED
    assert final.result is None
    assert store.cancel(new_job_id(), now) is None
    assert store.claim_next("w", LEASE, now + 100) is None


def test_release_requeues_without_using_an_attempt(store: JobStore) -> None:
    job = new_job()
    store.create(job)
    now = time.time()
    claim = store.claim_next("w", LEASE, now)
    assert claim is not None

    assert store.release(claim, now + 10, now)
    assert store.claim_next("w", LEASE, now + 1) is None  # not due yet
    again = store.claim_next("w", LEASE, now + 11)

    assert again is not None
    assert again.job.attempts == 1


def test_webhook_delivery_bookkeeping(store: JobStore) -> None:
    job = new_job(webhook="https://hooks.example/done")
    store.create(job)
    now = time.time()
    claim = store.claim_next("w", LEASE, now)
    assert claim is not None
    assert store.claim_webhook(10, now) is None  # nothing owed before the job finishes
    store.finish(claim, JobStatus.SUCCEEDED, 1, None, now)

    first = store.claim_webhook(10, now + 1)
    assert first is not None
    assert first.webhook_attempts == 1
    assert store.claim_webhook(10, now + 2) is None  # leased to the first deliverer
    store.finish_webhook(job.id, False, "answered 500", now + 5)
    assert store.claim_webhook(10, now + 3) is None  # backing off
    second = store.claim_webhook(10, now + 6)
    assert second is not None
    assert second.webhook_attempts == 2
    store.finish_webhook(job.id, True, None, None)

    final = store.get(job.id)
    assert final is not None
    assert final.webhook_state is WebhookState.DELIVERED
    assert store.claim_webhook(10, now + 100) is None


def test_purge_removes_only_expired_finished_jobs_and_frees_their_keys(store: JobStore) -> None:
    cutoff = 0.0
    old = new_job(key="old-key")
    young = new_job()
    queued = new_job()
    owed = new_job(webhook="https://hooks.example/x")
    for job in (old, young, queued, owed):
        store.create(job)
    for job in (old, owed, young):
        if job is young:
            cutoff = time.time()
            time.sleep(0.02)
        claim = store.claim(job.id, "w", LEASE, time.time())
        assert isinstance(claim, Claim)
        store.finish(claim, JobStatus.SUCCEEDED, 1, None, time.time())

    purged = store.purge(cutoff)

    assert purged == 1
    assert store.get(old.id) is None
    assert store.get(young.id) is not None
    assert store.get(queued.id) is not None
    assert store.get(owed.id) is not None  # its webhook is still owed
    _, created = store.create(new_job(key="old-key"))
    assert created


def test_undispatched_lists_jobs_cloud_tasks_never_got(store: JobStore) -> None:
    now = time.time()
    lost = new_job(now=now - 60)
    handed = new_job(now=now - 60)
    store.create(lost)
    store.create(handed)
    store.mark_dispatched(handed.id, now - 59)

    assert [job.id for job in store.undispatched(now - 30, 10)] == [lost.id]


def test_prepare_twice_keeps_data(store: JobStore) -> None:
    job = new_job()
    store.create(job)

    store.prepare()

    assert store.get(job.id) is not None


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_schema_upgraded_by_a_newer_release_still_works(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = make_store(kind, request, tmp_path)
    assert isinstance(store, SqlJobStore)
    store.prepare()
    with store._begin() as conn:  # a rollback: the database is ahead of this code
        conn.execute(sa.insert(SCHEMA).values(version=99, applied_at=time.time()))
    job = new_job()

    store.prepare()
    store.create(job)

    assert store.get(job.id) is not None
    assert "newer than this release" in caplog.text
    store.close()
