"""The Firestore store's compare-and-set: a change decided on a stale read is never written."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from serving.jobs.firestore_store import FirestoreJobStore
from serving.jobs.records import JobStatus
from tests.jobs.conftest import make_store
from tests.jobs.test_store import LEASE, new_job

pytestmark = pytest.mark.e2e  # the Firestore emulator is a process


@pytest.fixture
def firestore_store(request: pytest.FixtureRequest, tmp_path: Path) -> FirestoreJobStore:
    store = make_store("firestore", request, tmp_path)
    assert isinstance(store, FirestoreJobStore)
    store.prepare()
    return store


def test_a_claim_from_a_stale_query_result_is_refused_and_the_next_candidate_taken(
    firestore_store: FirestoreJobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = new_job(now=time.time() - 10)
    second = new_job(now=time.time() - 5)
    firestore_store.create(first)
    firestore_store.create(second)
    now = time.time()
    stale = firestore_store._candidates(now)  # what a slow claimer read
    winner = firestore_store.claim_next("fast", LEASE, now)
    assert winner is not None
    assert winner.job_id == first.id

    monkeypatch.setattr(firestore_store, "_candidates", lambda now: stale)
    loser = firestore_store.claim_next("slow", LEASE, now)

    assert loser is not None
    assert loser.job_id == second.id  # the first job was written since the read: skipped
    held = firestore_store.get(first.id)
    assert held is not None
    assert held.worker == "fast"
    assert held.attempts == 1


def test_a_finish_racing_a_cancel_is_decided_again_on_a_fresh_read(
    firestore_store: FirestoreJobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    firestore_store.create(new_job())
    claim = firestore_store.claim_next("w1", LEASE, time.time())
    assert claim is not None
    ref = firestore_store._jobs().document(claim.job_id)
    real_get = ref.get
    reads: list[Any] = []

    def get_then_cancel(*args: Any, **kwargs: Any) -> Any:
        snapshot = real_get(*args, **kwargs)
        reads.append(snapshot)
        if len(reads) == 1:  # the finish's first read is overtaken by a cancel before its write
            assert firestore_store.cancel(claim.job_id, time.time()) is not None
        return snapshot

    monkeypatch.setattr(firestore_store, "_jobs", lambda: _Fixed(ref, get_then_cancel))
    finished = firestore_store.finish(claim, JobStatus.SUCCEEDED, {"ok": True}, None, time.time())

    assert finished is None  # the claim was lost to the cancel: the result is discarded
    assert len(reads) == 3  # the finish's read, the cancel's, the finish's fresh read
    monkeypatch.undo()
    job = firestore_store.get(claim.job_id)
    assert job is not None
    assert job.status is JobStatus.CANCELED
    assert job.result is None


class _Fixed:
    """A collection whose `document()` is one reference with its `get` replaced."""

    def __init__(self, ref: Any, get: Any) -> None:
        self._ref = ref
        self._get = get

    def document(self, job_id: str) -> Any:
        ref = self._ref
        ref.get = self._get
        return ref
