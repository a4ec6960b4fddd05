"""The job API: asynchronous submits, `GET`/`DELETE /v1/jobs/<id>`, and Cloud Tasks' run endpoint.

A `POST /v1/<Model>` becomes a job when serving/protocols/native/dispatch.py says so; the body is
validated first, so a bad request never becomes a job. `submit` answers
`202 {"job_id", "status": "queued", "message": "Task Scheduled"}` with
`Location: /v1/jobs/<job_id>`.
"""

from __future__ import annotations

import hashlib
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from serving.errors import (
    BadRequest,
    Forbidden,
    IdempotencyKeyReused,
    JobFinished,
    JobNotFound,
    JobsUnavailable,
    NotFound,
    PayloadTooLarge,
)
from serving.http.state import get_state
from serving.jobs.records import Job, is_job_id
from serving.jobs.service import JobService, get_jobs
from serving.jobs.store import DocumentTooLarge, IdempotencyConflict, StoreError
from serving.jobs.webhooks import WebhookRefused, check_url
from serving.observability.logs import current_request_id
from serving.runtime.registry import ModelRuntime, ModelStatus
from serving.security.access import current_key_id, key_ring, public

blueprint = Blueprint("jobs", __name__, url_prefix="/v1/jobs")
internal = Blueprint("jobs_internal", __name__, url_prefix="/internal/jobs")

WEBHOOK_HEADER = "Webhook-Url"


def _service() -> JobService:
    service = get_jobs(current_app)
    if service is None:
        raise JobsUnavailable(get_state().settings.jobs_disabled_reason())
    service.start()
    return service


def _job_location(job: Job) -> str:
    return f"/v1/jobs/{job.id}"


def _webhook(service: JobService) -> str | None:
    webhook = request.args.get("webhook") or request.headers.get(WEBHOOK_HEADER)
    if webhook is not None:
        try:
            check_url(webhook.strip(), service.webhook_policy)
        except WebhookRefused as exc:
            raise BadRequest(f"Webhook refused: {exc}", path="webhook") from None
        webhook = webhook.strip()
    return webhook


def submit(runtime: ModelRuntime, payload: Any, *, idempotency_key: str | None, preferred: bool) -> Response:
    """Store `payload` as a job for `runtime` and answer 202 Task Scheduled.

    `idempotency_key` is the request's (already checked); `preferred` says the client
    asked with `Prefer: respond-async`, which the answer confirms.
    """
    service = _service()
    if runtime.status in (ModelStatus.FAILED, ModelStatus.UNAVAILABLE):
        # Fails now rather than as a job: it would only fail there.
        get_state().inference.model_for(runtime)
    webhook = _webhook(service)
    try:
        job, created = service.submit(
            runtime,
            payload,
            idempotency_key=_owned_key(idempotency_key),
            webhook_url=webhook,
            request_id=current_request_id(),
            owner=current_key_id(),
        )
    except IdempotencyConflict as exc:
        raise IdempotencyKeyReused(job_id=exc.job.id) from None
    except DocumentTooLarge as exc:
        raise PayloadTooLarge(str(exc)) from None
    except StoreError as exc:
        current_app.logger.error("job store unavailable: %s", exc)
        error = JobsUnavailable("The job store is unavailable; retry later")
        error.headers["Retry-After"] = "5"
        raise error from None
    response = jsonify(job_id=job.id, status=job.status.value, message="Task Scheduled")
    response.status_code = 202
    response.headers["Location"] = _job_location(job)
    response.headers["Cache-Control"] = "no-store"
    if preferred:
        response.headers["Preference-Applied"] = "respond-async"
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    return response


def _owned_key(key: str | None) -> str | None:
    """The Idempotency-Key as stored: per API key, so two keys' clients never share a job."""
    owner = current_key_id()
    if key is None or owner is None:
        return key
    return "key:" + hashlib.sha256(f"{owner}\0{key}".encode()).hexdigest()


def _visible(job: Job | None) -> Job | None:
    """`job`, unless API keys are on and another key created it (then it does not exist)."""
    if job is None or not key_ring(current_app).enabled:
        return job
    return job if job.owner is not None and job.owner == current_key_id() else None


def _find(job_id: str) -> tuple[JobService, str]:
    # A malformed id cannot name a job: answer without asking the store.
    if not is_job_id(job_id):
        raise JobNotFound()
    return _service(), job_id


@blueprint.get("/<job_id>")
def get_job(job_id: str) -> Response:
    service, job_id = _find(job_id)
    try:
        job = _visible(service.get(job_id))
    except StoreError as exc:
        raise _store_unavailable(exc) from None
    if job is None:
        raise JobNotFound()
    response = jsonify(job.document())
    response.headers["Cache-Control"] = "no-store"
    if not job.status.terminal:
        response.headers["Retry-After"] = "1"
    return response


@blueprint.delete("/<job_id>")
def cancel_job(job_id: str) -> Response:
    service, job_id = _find(job_id)
    try:
        # Another key's job is not found, and so not canceled either.
        outcome = service.cancel(job_id) if _visible(service.get(job_id)) is not None else None
    except StoreError as exc:
        raise _store_unavailable(exc) from None
    if outcome is None:
        raise JobNotFound()
    job, changed = outcome
    if not changed:
        raise JobFinished(f"The job has already finished ({job.status.value}); nothing to cancel", status=job.status)
    response = jsonify(job.document())
    response.headers["Cache-Control"] = "no-store"
    return response


def _store_unavailable(exc: StoreError) -> JobsUnavailable:
    current_app.logger.error("job store unavailable: %s", exc)
    error = JobsUnavailable("The job store is unavailable; retry later")
    error.headers["Retry-After"] = "5"
    return error


def _queue_service(job_id: str) -> JobService:
    service = get_jobs(current_app)
    if service is None or service.queue_caller is None:
        raise NotFound("Not found: no such route")
    refusal = service.queue_caller.verify(request.headers)
    if refusal is not None:
        current_app.logger.warning("internal job endpoint refused: %s", refusal)
        raise Forbidden("Only the job queue may call this endpoint")
    if not is_job_id(job_id):
        raise JobNotFound()
    return service


# Open to the API-key check: Cloud Tasks cannot present an API key, and
# `_queue_service` admits only the queue itself (App Engine's header or an OIDC token).
@internal.post("/<job_id>/run")
@public
def run_job(job_id: str) -> Response:
    """Cloud Tasks delivers a job here; it runs inside this request."""
    service = _queue_service(job_id)
    try:
        outcome = service.run_delivered(job_id)
    except StoreError as exc:
        raise _store_unavailable(exc) from None
    response = jsonify(job_id=job_id, **outcome.body)
    response.status_code = outcome.status
    if outcome.retry_after_s is not None:
        response.headers["Retry-After"] = str(max(1, round(outcome.retry_after_s)))
    return response


@internal.post("/<job_id>/webhook")
@public
def deliver_webhook(job_id: str) -> Response:
    """Cloud Tasks asks for one more webhook delivery attempt here."""
    service = _queue_service(job_id)
    try:
        attempted = service.deliver_webhook(job_id)
    except StoreError as exc:
        raise _store_unavailable(exc) from None
    # 200 either way: a retry, if one is due, was enqueued as a task of its own.
    return jsonify(job_id=job_id, attempted=attempted)
