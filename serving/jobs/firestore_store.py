"""The job store on Firestore: serverless, nothing to run, scales to zero.

One document per job in `JOBS_FIRESTORE_COLLECTION` (id = job id) and one per idempotency
key in `<collection>_keys` (id = SHA-256 of the key). Payloads, results and errors are kept
as JSON text, so any JSON (arrays of arrays, which Firestore cannot store natively, too)
round-trips unchanged (firestore_documents.py maps jobs to documents).

Every state change of a job is a compare-and-set: read the document, check the condition
(runnable, claim token, state), and write with the precondition that the document's
update time is still the one read; Firestore refuses the write if anyone wrote in
between, and the change is decided again on a fresh read. That makes claims atomic and
the terminal transition happen exactly once across instances, and it takes no locks.
Transactions (which lock what they read) are kept for creating a job with its
idempotency key, the one change that spans two documents: with several claimers on the
same candidates, locking reads made a claim wait for other claimers' locks (seconds
each on the emulator, 26 s seen), long enough for a 30 s lease to expire before the
claim was written and the job to be handed out a second time.

Queries that find candidates need composite indexes in production (the emulator needs
none); docs/jobs.md lists them. `FIRESTORE_EMULATOR_HOST` makes the client use an emulator.
"""

from __future__ import annotations

import functools
import logging
import os
import secrets
import threading
from typing import Any

from google.api_core import exceptions as google_exceptions
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from serving.jobs.firestore_documents import (
    MAX_JSON_BYTES,
    job_document,
    job_from_document,
    key_document_id,
    terminal_fields,
)
from serving.jobs.records import Job, JobStatus, WebhookState, dumps
from serving.jobs.store import Claim, IdempotencyConflict, StoreError

log = logging.getLogger("serving.jobs.store")

_CANDIDATES = 10
_SWAP_ATTEMPTS = 10
_EXHAUSTED = {
    "code": "attempts_exhausted",
    "message": "Gave up: every attempt ended with the process running the job stopping before it finished "
    "(crash, out of memory, kill or restart)",
}
_CANCELED = {"code": "canceled", "message": "Canceled by the client"}
_TOO_LARGE = {
    "code": "result_too_large",
    "message": "The result is larger than the Firestore job store can keep (1 MiB)",
}


class _Contended(StoreError):
    """A change kept colliding with other writers of the same document."""


def _update_unless_changed(ref: Any, changes: dict[str, Any], option: Any) -> bool | None:
    """True once written; False if the document changed since it was read; None if it is gone."""
    try:
        ref.update(changes, option=option)
    except google_exceptions.FailedPrecondition:
        return False
    except google_exceptions.NotFound:
        return None
    return True


class FirestoreJobStore:
    """`JobStore` on Firestore; clients are made per process, after the fork."""

    def __init__(self, *, project: str | None, database: str, collection: str) -> None:
        self.project = project
        self.database = database
        self.collection = collection
        self._client: firestore.Client | None = None
        self._pid = 0
        self._lock = threading.Lock()

    # --- lifecycle ---

    def _db(self) -> firestore.Client:
        # gRPC channels do not survive fork(): each process makes its own client.
        with self._lock:
            if self._client is None or self._pid != os.getpid():
                try:
                    self._client = firestore.Client(project=self.project, database=self.database)
                except Exception as exc:
                    raise StoreError(f"cannot create a Firestore client: {exc}") from exc
                self._pid = os.getpid()
            return self._client

    def _jobs(self) -> Any:
        return self._db().collection(self.collection)

    def _keys(self) -> Any:
        return self._db().collection(f"{self.collection}_keys")

    def prepare(self) -> None:
        """Firestore has no schema; checks that the database answers."""
        self._call(lambda: self._jobs().limit(1).get())

    def after_fork(self) -> None:
        if self._pid and self._pid != os.getpid():
            self._client = None

    def close(self) -> None:
        if self._client is not None and self._pid == os.getpid():
            self._client.close()  # type: ignore[no-untyped-call]
        self._client = None

    def _call(self, operation: Any) -> Any:
        try:
            return operation()
        except StoreError:
            raise
        except (google_exceptions.GoogleAPIError, OSError) as exc:
            raise StoreError(f"job store (Firestore) failed: {exc.__class__.__name__}: {exc}") from exc

    def _transaction(self, body: Any, max_attempts: int = 10) -> Any:
        def attempt() -> Any:
            transaction = self._db().transaction(max_attempts=max_attempts)
            try:
                return firestore.transactional(body)(transaction)
            except ValueError as exc:
                if "Failed to commit transaction" in str(exc):
                    raise _Contended(str(exc)) from exc
                raise

        return self._call(attempt)

    def _swap(self, ref: Any, decide: Any, first: Any = None, attempts: int = _SWAP_ATTEMPTS) -> Any:
        """Compare-and-set on one document: `decide(data)` returns `(result, changes)`.

        `changes` are written only if the document was not written since it was read;
        otherwise it is read again and decided again, up to `attempts` times (then
        `_Contended`). No changes: `result` is returned as is. A missing document: None.
        `first` is a snapshot already read (by a query), used for the first attempt.
        """
        snapshot = first
        for _ in range(attempts):
            if snapshot is None:
                snapshot = self._call(ref.get)
            if not snapshot.exists:
                return None
            result, changes = decide(snapshot.to_dict())
            if not changes:
                return result
            option = self._db().write_option(last_update_time=snapshot.update_time)
            written = self._call(functools.partial(_update_unless_changed, ref, changes, option))
            if written is None:
                return None  # deleted since it was read
            if written:
                return result
            snapshot = None  # written by someone else since it was read: decide again
        raise _Contended(f"job {ref.id} kept changing under {attempts} attempts to change it")

    # --- submit and read ---

    def create(self, job: Job) -> tuple[Job, bool]:
        data = job_document(job)
        job_ref = self._jobs().document(job.id)
        key_ref = (
            self._keys().document(key_document_id(job.idempotency_key)) if job.idempotency_key is not None else None
        )

        def body(transaction: Any) -> tuple[Job, bool]:
            if key_ref is not None:
                key = key_ref.get(transaction=transaction)
                if key.exists:
                    existing = self._jobs().document(key.get("job_id")).get(transaction=transaction)
                    if existing.exists:
                        found = job_from_document(existing.to_dict())
                        if found.request_hash != job.request_hash:
                            raise IdempotencyConflict(found)
                        return found, False
                transaction.set(key_ref, {"job_id": job.id, "created_at": job.created_at})
            transaction.create(job_ref, data)
            return job, True

        return self._transaction(body)  # type: ignore[no-any-return]

    def get(self, job_id: str) -> Job | None:
        snapshot = self._call(lambda: self._jobs().document(job_id).get())
        return job_from_document(snapshot.to_dict()) if snapshot.exists else None

    # --- claims ---

    def _candidates(self, now: float) -> list[Any]:
        queued = (
            self._jobs()
            .where(filter=FieldFilter("status", "==", JobStatus.QUEUED.value))
            .where(filter=FieldFilter("not_before", "<=", now))
            .order_by("not_before")
            .limit(_CANDIDATES)
        )
        expired = (
            self._jobs()
            .where(filter=FieldFilter("status", "==", JobStatus.RUNNING.value))
            .where(filter=FieldFilter("lease_until", "<", now))
            .order_by("lease_until")
            .limit(_CANDIDATES)
        )
        found = self._call(lambda: list(queued.get()) + list(expired.get()))
        return sorted(found, key=lambda snapshot: snapshot.get("created_at"))

    def _claim_decision(self, worker: str, lease_s: float, now: float) -> Any:
        token = secrets.token_hex(16)

        def decide(data: dict[str, Any]) -> tuple[Claim | Job | None, dict[str, Any] | None]:
            job = job_from_document(data)
            expired = job.status is JobStatus.RUNNING and job.lease_until is not None and job.lease_until < now
            if expired and job.attempts >= job.max_attempts:
                changes = terminal_fields(job, JobStatus.FAILED, None, _EXHAUSTED, now)
                log.warning("job %s failed: attempts exhausted by stopped processes", job.id)
                return job_from_document({**data, **changes}), changes
            runnable = (job.status is JobStatus.QUEUED and job.not_before <= now) or expired
            if not runnable:
                return job, None
            changes = {
                "status": JobStatus.RUNNING.value,
                "claim_token": token,
                "worker": worker[:128],
                "lease_until": now + lease_s,
                "attempts": job.attempts + 1,
                "started_at": now,
                "updated_at": now,
            }
            return Claim(job_from_document({**data, **changes}), token), changes

        return decide

    def claim_next(self, worker: str, lease_s: float, now: float) -> Claim | None:
        for snapshot in self._candidates(now):
            decide = self._claim_decision(worker, lease_s, now)
            try:
                # One attempt, from the query's own read: a candidate written since is
                # being claimed by someone else; the next one is tried instead.
                outcome = self._swap(snapshot.reference, decide, first=snapshot, attempts=1)
            except _Contended:
                continue
            if isinstance(outcome, Claim):
                return outcome
        return None

    def claim(self, job_id: str, worker: str, lease_s: float, now: float) -> Claim | Job | None:
        return self._swap(self._jobs().document(job_id), self._claim_decision(worker, lease_s, now))  # type: ignore[no-any-return]

    def _if_held(self, claim: Claim, change: Any) -> Job | None:
        def decide(data: dict[str, Any]) -> tuple[Job | None, dict[str, Any] | None]:
            if data.get("claim_token") != claim.token or data.get("status") != JobStatus.RUNNING.value:
                return None, None
            changes = change(job_from_document(data))
            return job_from_document({**data, **changes}), changes

        return self._swap(self._jobs().document(claim.job_id), decide)  # type: ignore[no-any-return]

    def heartbeat(self, claims: list[Claim], lease_s: float, now: float) -> set[str]:
        lost = set()
        for claim in claims:
            kept = self._if_held(claim, lambda job: {"lease_until": now + lease_s, "updated_at": now})
            if kept is None:
                lost.add(claim.job_id)
        return lost

    def finish(
        self, claim: Claim, status: JobStatus, result: Any, error: dict[str, Any] | None, now: float
    ) -> Job | None:
        if status is JobStatus.SUCCEEDED and len(dumps(result).encode()) > MAX_JSON_BYTES:
            status, result, error = JobStatus.FAILED, None, _TOO_LARGE
        return self._if_held(claim, lambda job: terminal_fields(job, status, result, error, now))

    def release(self, claim: Claim, not_before: float, now: float) -> bool:
        def change(job: Job) -> dict[str, Any]:
            return {
                "status": JobStatus.QUEUED.value,
                "claim_token": None,
                "lease_until": None,
                "worker": None,
                "attempts": job.attempts - 1,
                "not_before": not_before,
                "updated_at": now,
            }

        return self._if_held(claim, change) is not None

    def cancel(self, job_id: str, now: float) -> tuple[Job, bool] | None:
        def decide(data: dict[str, Any]) -> tuple[tuple[Job, bool], dict[str, Any] | None]:
            job = job_from_document(data)
            if job.status.terminal:
                return (job, False), None
            changes = terminal_fields(job, JobStatus.CANCELED, None, _CANCELED, now)
            return (job_from_document({**data, **changes}), True), changes

        return self._swap(self._jobs().document(job_id), decide)  # type: ignore[no-any-return]

    # --- Cloud Tasks bookkeeping ---

    def mark_dispatched(self, job_id: str, now: float) -> None:
        self._call(lambda: self._jobs().document(job_id).update({"dispatched_at": now}))

    def undispatched(self, older_than: float, limit: int) -> list[Job]:
        query = (
            self._jobs()
            .where(filter=FieldFilter("status", "==", JobStatus.QUEUED.value))
            .where(filter=FieldFilter("dispatched_at", "==", None))
            .where(filter=FieldFilter("created_at", "<", older_than))
            .order_by("created_at")
            .limit(limit)
        )
        return [job_from_document(snapshot.to_dict()) for snapshot in self._call(lambda: list(query.get()))]

    # --- webhooks ---

    def claim_webhook(self, lease_s: float, now: float) -> Job | None:
        query = (
            self._jobs()
            .where(filter=FieldFilter("webhook_state", "==", WebhookState.PENDING.value))
            .where(filter=FieldFilter("webhook_next_at", "<=", now))
            .order_by("webhook_next_at")
            .limit(_CANDIDATES)
        )
        for snapshot in self._call(lambda: list(query.get())):
            job = self.claim_webhook_for(snapshot.id, lease_s, now)
            if job is not None:
                return job
        return None

    def claim_webhook_for(self, job_id: str, lease_s: float, now: float) -> Job | None:
        def decide(data: dict[str, Any]) -> tuple[Job | None, dict[str, Any] | None]:
            due = data.get("webhook_state") == WebhookState.PENDING.value and (data.get("webhook_next_at") or 0) <= now
            if not due:
                return None, None
            changes = {"webhook_next_at": now + lease_s, "webhook_attempts": int(data.get("webhook_attempts", 0)) + 1}
            return job_from_document({**data, **changes}), changes

        try:
            return self._swap(self._jobs().document(job_id), decide, attempts=1)  # type: ignore[no-any-return]
        except _Contended:
            return None  # another process took this delivery between the read and the write

    def finish_webhook(self, job_id: str, delivered: bool, error: str | None, retry_at: float | None) -> None:
        if delivered:
            values: dict[str, Any] = {"webhook_state": WebhookState.DELIVERED.value, "webhook_error": None}
        elif retry_at is None:
            values = {"webhook_state": WebhookState.FAILED.value, "webhook_error": error}
        else:
            values = {"webhook_next_at": retry_at, "webhook_error": error}

        def decide(data: dict[str, Any]) -> tuple[None, dict[str, Any] | None]:
            return None, values if data.get("webhook_state") == WebhookState.PENDING.value else None

        self._swap(self._jobs().document(job_id), decide)

    def purge(self, finished_before: float) -> int:
        purged = 0
        while True:
            query = self._jobs().where(filter=FieldFilter("finished_at", "<", finished_before)).limit(200)
            snapshots = self._call(lambda q=query: list(q.get()))
            doomed = [s for s in snapshots if s.get("webhook_state") != WebhookState.PENDING.value]
            if not doomed:
                return purged
            batch = self._db().batch()
            for snapshot in doomed:
                batch.delete(snapshot.reference)
                key = snapshot.get("idempotency_key")
                if key is not None:
                    batch.delete(self._keys().document(key_document_id(key)))
            self._call(batch.commit)
            purged += len(doomed)
            if len(snapshots) < 200:
                return purged
