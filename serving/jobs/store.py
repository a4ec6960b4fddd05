"""The `JobStore` protocol: what every job store (SQLite, PostgreSQL, Firestore) guarantees.

The guarantees the dispatchers build on:

- `claim` is atomic: of any number of processes claiming at once, exactly one gets a given
  job. A claim carries a fresh `claim_token` and a lease; `heartbeat` extends the lease
  while the job runs. A job whose lease expired (its process died) is claimable again,
  until `max_attempts` claims were made: then the next claim pass ends it as `failed`.
- `finish` is a compare-and-set on the claim token and the `running` state, so a job
  reaches a terminal state exactly once: the result of a claim that was lost (lease
  expired and re-claimed, or the job canceled) is discarded.
- `create` with an idempotency key returns the existing job for a key already used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from serving.jobs.records import Job, JobStatus


class StoreError(Exception):
    """The store cannot be reached or refused an operation; the message says which."""


class IdempotencyConflict(Exception):
    """An `Idempotency-Key` was reused for a request different from the first one."""

    def __init__(self, job: Job) -> None:
        super().__init__(f"idempotency key already used by job {job.id}")
        self.job = job


class DocumentTooLarge(Exception):
    """The job does not fit the store's size limit (Firestore: 1 MiB per document)."""


@dataclass(frozen=True)
class Claim:
    """The right to run one job until `lease_until`, proven by `token`."""

    job: Job
    token: str

    @property
    def job_id(self) -> str:
        return self.job.id


class JobStore(Protocol):
    """Durable job storage shared by every process of the service."""

    def prepare(self) -> None:
        """Create or upgrade the schema; safe to call from several processes at once."""

    def after_fork(self) -> None:
        """Drop connections inherited from a parent process (called in each new worker)."""

    def close(self) -> None:
        """Release connections."""

    def create(self, job: Job) -> tuple[Job, bool]:
        """Insert `job`; `(job, True)`, or `(existing, False)` when its idempotency key was used.

        Raises `IdempotencyConflict` when the key was used by a different request.
        """

    def get(self, job_id: str) -> Job | None:
        """The job, or None when there is none with this id."""

    def claim_next(self, worker: str, lease_s: float, now: float) -> Claim | None:
        """Claim the oldest runnable job: queued and due, or running with an expired lease.

        Before claiming, ends as `failed` every expired job that used all its attempts.
        """

    def claim(self, job_id: str, worker: str, lease_s: float, now: float) -> Claim | Job | None:
        """Claim this job if it is runnable; else the job as it is (or None if unknown).

        Used by a dispatcher that delivers one job id per request (Cloud Tasks). A job
        whose expired lease used all its attempts is ended as `failed` and returned.
        """

    def heartbeat(self, claims: list[Claim], lease_s: float, now: float) -> set[str]:
        """Extend the leases of `claims`; returns the ids whose claim was lost."""

    def finish(
        self, claim: Claim, status: JobStatus, result: Any, error: dict[str, Any] | None, now: float
    ) -> Job | None:
        """Move a claimed job to a terminal state; None (and nothing changes) if the claim was lost."""

    def release(self, claim: Claim, not_before: float, now: float) -> bool:
        """Give a claimed job back to the queue, due at `not_before`, without using an attempt."""

    def cancel(self, job_id: str, now: float) -> tuple[Job, bool] | None:
        """Cancel a queued or running job: `(job, True)`; `(job, False)` when it had finished.

        None when there is no such job. A running job's claim is revoked, so the result
        of the model call in progress is discarded by `finish`.
        """

    def mark_dispatched(self, job_id: str, now: float) -> None:
        """Record that a dispatcher (Cloud Tasks) has been handed the job."""

    def undispatched(self, older_than: float, limit: int) -> list[Job]:
        """Queued jobs never handed to the dispatcher, created before `older_than`."""

    def claim_webhook(self, lease_s: float, now: float) -> Job | None:
        """Take the oldest due webhook delivery for `lease_s`, counting one attempt."""

    def claim_webhook_for(self, job_id: str, lease_s: float, now: float) -> Job | None:
        """Take this job's webhook delivery if it is due (see `claim_webhook`)."""

    def finish_webhook(self, job_id: str, delivered: bool, error: str | None, retry_at: float | None) -> None:
        """Record a delivery attempt: delivered, failed for good (`retry_at` None), or retried."""

    def purge(self, finished_before: float) -> int:
        """Delete jobs that finished before `finished_before` and owe no webhook; their count."""
