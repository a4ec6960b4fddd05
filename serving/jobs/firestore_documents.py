"""Jobs as Firestore documents: the fields of a job, of its end, and of an idempotency key's id.

Payloads, results and errors are kept as JSON text, so any JSON (arrays of arrays, which
Firestore cannot store natively, too) round-trips unchanged.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from serving.jobs.records import Job, JobStatus, WebhookState, dumps, stored_fields
from serving.jobs.store import DocumentTooLarge

# Firestore's limit is 1 MiB per document; leave room for the other fields.
MAX_JSON_BYTES = 1_000_000


def key_document_id(key: str | None) -> str:
    """The id of an idempotency key's document: the SHA-256 of the key."""
    return hashlib.sha256((key or "").encode()).hexdigest()


def terminal_fields(
    job: Job, status: JobStatus, result: Any, error: dict[str, Any] | None, now: float
) -> dict[str, Any]:
    """The fields that end a job in `status` (and make its webhook, if any, due now)."""
    pending = job.webhook_url is not None
    return {
        "status": status.value,
        "result": dumps(result) if status is JobStatus.SUCCEEDED else None,
        "error": dumps(error) if error is not None else None,
        "finished_at": now,
        "updated_at": now,
        "claim_token": None,
        "lease_until": None,
        "webhook_state": WebhookState.PENDING.value if pending else None,
        "webhook_next_at": now if pending else None,
    }


def job_document(job: Job) -> dict[str, Any]:
    """The Firestore document of a new job; raises `DocumentTooLarge` over Firestore's limit."""
    document = stored_fields(job)
    if len(document["payload"].encode()) > MAX_JSON_BYTES:
        raise DocumentTooLarge("The request is larger than the Firestore job store can keep (1 MiB per job)")
    return document


def job_from_document(data: dict[str, Any]) -> Job:
    """The `Job` a Firestore document holds."""
    return Job(
        id=data["id"],
        model=data["model"],
        status=JobStatus(data["status"]),
        payload=json.loads(data["payload"]),
        result=json.loads(data["result"]) if data.get("result") is not None else None,
        error=json.loads(data["error"]) if data.get("error") is not None else None,
        created_at=float(data["created_at"]),
        updated_at=float(data["updated_at"]),
        started_at=data.get("started_at"),
        finished_at=data.get("finished_at"),
        not_before=float(data.get("not_before") or 0.0),
        attempts=int(data.get("attempts", 0)),
        max_attempts=int(data["max_attempts"]),
        lease_until=data.get("lease_until"),
        claim_token=data.get("claim_token"),
        worker=data.get("worker"),
        idempotency_key=data.get("idempotency_key"),
        request_hash=data.get("request_hash"),
        request_id=data.get("request_id"),
        webhook_url=data.get("webhook_url"),
        webhook_state=WebhookState(data["webhook_state"]) if data.get("webhook_state") else None,
        webhook_attempts=int(data.get("webhook_attempts", 0)),
        webhook_next_at=data.get("webhook_next_at"),
        webhook_error=data.get("webhook_error"),
        dispatched_at=data.get("dispatched_at"),
        owner=data.get("owner"),
    )
