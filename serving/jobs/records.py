"""A job as every store keeps it, its states, and the JSON document clients see."""

from __future__ import annotations

import enum
import hashlib
import json
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

# 128 random bits as 32 lowercase hex digits: unguessable, URL- and Firestore-safe.
JOB_ID_PATTERN = re.compile(r"^[0-9a-f]{32}$")


def new_job_id() -> str:
    """A fresh job id carrying 128 random bits."""
    return secrets.token_hex(16)


def is_job_id(text: str) -> bool:
    """True when `text` has the shape of a job id (checked before any store is asked)."""
    return bool(JOB_ID_PATTERN.match(text))


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def terminal(self) -> bool:
        """True for the states a job never leaves."""
        return self in TERMINAL


TERMINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED})


class WebhookState(enum.StrEnum):
    PENDING = "pending"  # the job finished; the callback is due at `webhook_next_at`
    DELIVERED = "delivered"
    FAILED = "failed"  # every attempt failed, or the target was refused


@dataclass
class Job:
    """One job, as stored. Times are seconds since the epoch (UTC)."""

    id: str
    model: str
    status: JobStatus
    payload: Any
    created_at: float
    updated_at: float
    max_attempts: int
    attempts: int = 0
    result: Any = None
    error: dict[str, Any] | None = None
    started_at: float | None = None
    finished_at: float | None = None
    not_before: float = 0.0
    lease_until: float | None = None
    claim_token: str | None = None
    worker: str | None = None
    idempotency_key: str | None = None
    request_hash: str | None = None
    request_id: str | None = None
    webhook_url: str | None = None
    webhook_state: WebhookState | None = None
    webhook_attempts: int = 0
    webhook_next_at: float | None = None
    webhook_error: str | None = None
    dispatched_at: float | None = None
    # The id of the API key that submitted the job (serving/security/access.py); with keys on, only
    # that key may read or cancel it.
    owner: str | None = None

    def document(self) -> dict[str, Any]:
        """The public JSON document of `GET /v1/jobs/<id>` (and of the webhook)."""
        doc: dict[str, Any] = {"job_id": self.id, "model": self.model, "status": self.status.value}
        if self.status is JobStatus.SUCCEEDED:
            doc["result"] = self.result
        if self.error is not None and self.status in (JobStatus.FAILED, JobStatus.CANCELED):
            doc["error"] = self.error
        doc["created_at"] = iso_time(self.created_at)
        if self.started_at is not None:
            doc["started_at"] = iso_time(self.started_at)
        if self.finished_at is not None:
            doc["finished_at"] = iso_time(self.finished_at)
        doc["attempts"] = self.attempts
        if self.webhook_url is not None:
            doc["webhook"] = {"state": self.webhook_state.value if self.webhook_state else "waiting"}
            if self.webhook_error:
                doc["webhook"]["error"] = self.webhook_error
        return doc


def iso_time(seconds: float) -> str:
    """RFC 3339 UTC time with milliseconds, e.g. `2026-11-21T18:04:05.123Z`."""
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def request_fingerprint(model: str, payload: Any, webhook_url: str | None) -> str:
    """A digest of what a submit asked for, to tell a retried submit from a different one."""
    canonical = json.dumps([model, payload, webhook_url], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def dumps(value: Any) -> str:
    """JSON text for a stored payload, result or error."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def stored_fields(job: Job) -> dict[str, Any]:
    """Every field of `job` as a job store keeps it: enums as their values, JSON as text.

    The SQL and Firestore stores write exactly this, so a field added to `Job` is added
    to both in one place.
    """
    return {
        "id": job.id,
        "model": job.model,
        "status": job.status.value,
        "payload": dumps(job.payload),
        "result": dumps(job.result) if job.result is not None else None,
        "error": dumps(job.error) if job.error is not None else None,
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "not_before": job.not_before,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "lease_until": job.lease_until,
        "claim_token": job.claim_token,
        "worker": job.worker,
        "idempotency_key": job.idempotency_key,
        "request_hash": job.request_hash,
        "request_id": job.request_id,
        "webhook_url": job.webhook_url,
        "webhook_state": job.webhook_state.value if job.webhook_state else None,
        "webhook_attempts": job.webhook_attempts,
        "webhook_next_at": job.webhook_next_at,
        "webhook_error": job.webhook_error,
        "dispatched_at": job.dispatched_at,
        "owner": job.owner,
    }
