"""`JobService`: submit, read and cancel jobs, and the per-process background work.

`init_jobs(app)` builds it from the settings when the app is built, choosing the store and
the dispatcher (serving/jobs/stores.py; serving/config/jobs.py refuses a combination that
would lose jobs).
Nothing here touches the database at build time: the schema is created on first use in
each process, and the `threads` pool starts in each server process after the fork
(`start_background_jobs`, called from gunicorn's `post_worker_init` hook, or on the first
job request under another server).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flask import Flask

from serving.config.settings import Settings
from serving.jobs.pool import WorkerPool
from serving.jobs.records import Job, JobStatus, new_job_id, request_fingerprint
from serving.jobs.runner import JobRunner, LeaseKeeper, worker_name
from serving.jobs.store import Claim, JobStore, StoreError
from serving.jobs.stores import build_store
from serving.jobs.webhooks import WebhookPolicy, backoff_s, deliver
from serving.observability.metrics import Metrics
from serving.runtime.inference import Inference
from serving.runtime.registry import ModelRuntime, Registry

if TYPE_CHECKING:
    from serving.jobs.cloud_tasks import CloudTasksDispatcher, QueueCaller

log = logging.getLogger("serving.jobs")

EXTENSION_KEY = "serving.jobs"
# A queued job not handed to Cloud Tasks this long after its submit is dispatched again.
_REDISPATCH_AFTER_S = 15.0


@dataclass(frozen=True)
class RunOutcome:
    """What the Cloud Tasks run endpoint answers: 2xx ends the task, anything else retries it."""

    status: int
    body: dict[str, Any]
    retry_after_s: float | None = None


class JobService:
    """Everything the job routes need; one per app, shared by the threads of a process."""

    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        inference: Inference,
        store: JobStore,
        *,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.store = store
        # Every state a job enters is counted in /metrics (`model_serving_jobs_total`).
        self.metrics = metrics if metrics is not None else Metrics()
        self.registry = registry
        self.clock = clock
        self.dispatcher_kind = settings.jobs_dispatcher
        self.webhook_policy = WebhookPolicy(
            allow_loopback=settings.jobs_webhook_allow_loopback, timeout_s=settings.jobs_webhook_timeout_s
        )
        self.leases = LeaseKeeper(store, settings.jobs_lease_s, clock)
        slots = settings.jobs_workers if self.dispatcher_kind == "threads" else 4 * settings.threads
        self.runner = JobRunner(
            store,
            registry,
            inference,
            self.leases,
            default_timeout_s=settings.jobs_timeout_s,
            slots=slots,
            on_finished=self._job_finished,
            on_started=lambda job: self.metrics.count_job(job.model, JobStatus.RUNNING.value),
            clock=clock,
        )
        self.pool: WorkerPool | None = None
        self.tasks: CloudTasksDispatcher | None = None
        self.queue_caller: QueueCaller | None = None
        if self.dispatcher_kind == "threads":
            self.pool = WorkerPool(
                store,
                self.runner,
                workers=settings.jobs_workers,
                lease_s=settings.jobs_lease_s,
                poll_interval_s=settings.jobs_poll_interval_s,
                housekeeping=self.housekeeping,
                prepare=self.ensure_prepared,
                clock=clock,
            )
        else:
            # Imported only when used: the Google client libraries take a while to load.
            from serving.jobs.cloud_tasks import CloudTasksDispatcher, QueueCaller

            audience = settings.jobs_tasks_audience or settings.jobs_tasks_url
            self.tasks = CloudTasksDispatcher(
                queue=settings.jobs_tasks_queue,
                target=settings.jobs_tasks_target,
                base_url=settings.jobs_tasks_url,
                service_account=settings.jobs_tasks_service_account,
                audience=audience,
                app_engine_service=settings.gae_service or "",
                deadline_s=settings.jobs_timeout_s,
                emulator_host=settings.jobs_tasks_emulator_host,
            )
            self.queue_caller = QueueCaller(
                target=settings.jobs_tasks_target,
                queue=settings.jobs_tasks_queue,
                on_app_engine=settings.platform.is_app_engine,
                service_account=settings.jobs_tasks_service_account,
                audience=audience,
                certs_url=settings.jobs_tasks_oidc_certs_url,
            )
        self._prepared_in: int | None = None
        self._prepare_lock = threading.Lock()
        self._last_purge = 0.0
        self._started_in: int | None = None

    # --- per process ---

    def ensure_prepared(self) -> None:
        """Create or upgrade the store's schema, once per process (raises `StoreError`)."""
        if self._prepared_in == os.getpid():
            return
        with self._prepare_lock:
            if self._prepared_in != os.getpid():
                self.store.after_fork()
                self.store.prepare()
                self._prepared_in = os.getpid()

    def start(self) -> None:
        """Start this process's background work (the `threads` pool); idempotent.

        gunicorn calls it from its `post_worker_init` hook, so a restarted server resumes
        its jobs at once; the job routes call it too, for other servers (Flask's
        development server), so an app that never sees a job starts no threads.
        """
        if self._started_in == os.getpid() or self.pool is None or self.settings.jobs_workers == 0:
            return
        self._started_in = os.getpid()
        self.store.after_fork()
        self.pool.start()

    def stop(self, timeout_s: float) -> None:
        """Stop claiming and give running jobs up to `timeout_s` to finish."""
        if self.pool is not None and self._started_in == os.getpid():
            self.pool.stop(timeout_s)
        self.leases.stop()

    # --- the API ---

    def submit(
        self,
        runtime: ModelRuntime,
        payload: Any,
        *,
        idempotency_key: str | None,
        webhook_url: str | None,
        request_id: str | None,
        owner: str | None = None,
    ) -> tuple[Job, bool]:
        """Store a new job and hand it to the dispatcher; `(job, created)`.

        With an idempotency key already used for the same request, the existing job
        comes back with `created` False. Raises `IdempotencyConflict`, `StoreError`.
        """
        self.ensure_prepared()
        now = self.clock()
        job = Job(
            id=new_job_id(),
            model=runtime.spec.name,
            status=JobStatus.QUEUED,
            payload=payload,
            created_at=now,
            updated_at=now,
            max_attempts=self.settings.jobs_max_attempts,
            idempotency_key=idempotency_key,
            request_hash=request_fingerprint(runtime.spec.name, payload, webhook_url),
            request_id=request_id,
            webhook_url=webhook_url,
            owner=owner,
        )
        stored, created = self.store.create(job)
        if created:
            self.metrics.count_job(stored.model, JobStatus.QUEUED.value)
        if created or (stored.status is JobStatus.QUEUED and stored.dispatched_at is None):
            self._dispatch(stored)
        return stored, created

    def get(self, job_id: str) -> Job | None:
        self.ensure_prepared()
        job = self.store.get(job_id)
        if (
            job is not None
            and self.tasks is not None
            and job.status is JobStatus.QUEUED
            and job.dispatched_at is None
            and self.clock() - job.created_at > _REDISPATCH_AFTER_S
        ):
            # Its submit could not reach Cloud Tasks; the client's poll is a fine moment
            # to try again.
            self._dispatch(job)
        return job

    def cancel(self, job_id: str) -> tuple[Job, bool] | None:
        self.ensure_prepared()
        outcome = self.store.cancel(job_id, self.clock())
        if outcome is not None and outcome[1]:
            log.info("job %s canceled", job_id, extra={"job_id": job_id})
            self._job_finished(outcome[0], inline=False)
        return outcome

    def _dispatch(self, job: Job) -> None:
        if self.pool is not None:
            self.pool.wake()
            return
        from serving.jobs.cloud_tasks import DispatchError

        assert self.tasks is not None
        try:
            self.tasks.enqueue_run(job)
        except DispatchError as exc:
            # The job is safe in the store; a later poll or run request dispatches it again.
            log.error("job %s: %s", job.id, exc, extra={"job_id": job.id})
            return
        self.store.mark_dispatched(job.id, self.clock())

    def _job_finished(self, job: Job, *, inline: bool = True) -> None:
        self.metrics.count_job(job.model, job.status.value)
        if job.webhook_url is None:
            return
        if self.pool is not None:
            self.pool.job_finished(job)
        elif inline:
            # Inside the run request the instance has CPU: deliver now, retry via a task.
            self.deliver_webhook(job.id)
        else:
            # A client's DELETE should not wait for someone else's webhook target.
            from serving.jobs.cloud_tasks import DispatchError

            assert self.tasks is not None
            try:
                self.tasks.enqueue_webhook(job, 0.0)
            except DispatchError as exc:
                log.error("job %s: %s", job.id, exc, extra={"job_id": job.id})

    # --- background work ---

    def housekeeping(self) -> None:
        """Deliver due webhooks and purge expired jobs (the pool calls it every poll)."""
        self.ensure_prepared()
        while True:
            job = self.store.claim_webhook(self._webhook_lease_s(), self.clock())
            if job is None:
                break
            self._deliver(job)
        self.purge_if_due()

    def purge_if_due(self) -> int:
        now = self.clock()
        if now - self._last_purge < self.settings.jobs_purge_interval_s:
            return 0
        self._last_purge = now
        purged = self.store.purge(now - self.settings.jobs_retention_s)
        if purged:
            log.info("purged %d finished job(s) past their retention", purged)
        return purged

    def _webhook_lease_s(self) -> float:
        return self.settings.jobs_webhook_timeout_s * 3 + 5

    def deliver_webhook(self, job_id: str) -> bool:
        """One delivery attempt for a job whose webhook is due; False if none was due."""
        job = self.store.claim_webhook_for(job_id, self._webhook_lease_s(), self.clock())
        if job is None:
            return False
        self._deliver(job)
        return True

    def _deliver(self, job: Job) -> None:
        outcome = deliver(job.webhook_url or "", job.document(), job.webhook_attempts, self.webhook_policy)
        fields = {"job_id": job.id, "attempt": job.webhook_attempts}
        if outcome.delivered:
            self.store.finish_webhook(job.id, True, None, None)
            log.info("job %s: webhook delivered", job.id, extra=fields)
            return
        exhausted = job.webhook_attempts >= self.settings.jobs_webhook_max_attempts
        if not outcome.retryable or exhausted:
            self.store.finish_webhook(job.id, False, outcome.error, None)
            log.warning("job %s: webhook failed for good: %s", job.id, outcome.error, extra=fields)
            return
        delay = backoff_s(job.webhook_attempts, self.settings.jobs_webhook_backoff_s)
        self.store.finish_webhook(job.id, False, outcome.error, self.clock() + delay)
        log.info("job %s: webhook failed (%s); retry in %.1f s", job.id, outcome.error, delay, extra=fields)
        if self.tasks is not None:
            from serving.jobs.cloud_tasks import DispatchError

            try:
                self.tasks.enqueue_webhook(job, delay)
            except DispatchError as exc:
                log.error("job %s: %s", job.id, exc, extra=fields)

    # --- Cloud Tasks ---

    def run_delivered(self, job_id: str) -> RunOutcome:
        """Run a job delivered by Cloud Tasks inside this request."""
        self.ensure_prepared()
        if not self.runner.slots.acquire(timeout=1.0):
            return RunOutcome(503, {"message": "busy"}, retry_after_s=5)
        try:
            claimed = self.store.claim(job_id, worker_name(), self.settings.jobs_lease_s, self.clock())
        except BaseException:
            self.runner.slots.release()
            raise
        if not isinstance(claimed, Claim):
            self.runner.slots.release()
            return self._not_claimed(job_id, claimed)
        job = self.runner.run(claimed)
        self._sweep()
        if job is None:
            current = self.store.get(job_id)
            if current is not None and current.status is JobStatus.QUEUED:
                return RunOutcome(503, {"status": "queued", "message": "model loading"}, retry_after_s=5)
            return RunOutcome(200, {"status": current.status.value if current else "purged"})
        return RunOutcome(200, {"status": job.status.value})

    def _not_claimed(self, job_id: str, job: Job | None) -> RunOutcome:
        if job is None:
            log.warning("task for unknown job %s dropped", job_id, extra={"job_id": job_id})
            return RunOutcome(200, {"status": "unknown"})
        if job.status.terminal:
            return RunOutcome(200, {"status": job.status.value})
        # Running under a live lease elsewhere (a duplicate delivery), or not yet due:
        # have Cloud Tasks come back later, when it is finished or its lease expired.
        wait = max(1.0, (job.lease_until or job.not_before) - self.clock())
        return RunOutcome(503, {"status": job.status.value, "message": "running elsewhere"}, retry_after_s=wait)

    def _sweep(self) -> None:
        """Inside a run request: dispatch jobs whose submit missed Cloud Tasks, purge."""
        try:
            for job in self.store.undispatched(self.clock() - _REDISPATCH_AFTER_S, limit=20):
                self._dispatch(job)
            self.purge_if_due()
        except StoreError as exc:
            log.warning("job sweep failed: %s", exc)


def init_jobs(
    app: Flask, settings: Settings, registry: Registry, inference: Inference, metrics: Metrics
) -> JobService | None:
    """Build the app's `JobService` (None when jobs are off); refuses unsafe combinations."""
    store = build_store(settings)
    service = JobService(settings, registry, inference, store, metrics=metrics) if store is not None else None
    app.extensions[EXTENSION_KEY] = service
    if service is None:
        return None
    if service.dispatcher_kind == "threads" and settings.platform.on_google_cloud:
        log.warning(
            "JOBS_DISPATCHER=threads on a serverless platform: background threads get CPU only with "
            "instance-based billing / always-allocated CPU; JOBS_DISPATCHER=cloud-tasks runs jobs inside requests"
        )
    return service


def get_jobs(app: Flask) -> JobService | None:
    """The app's `JobService`, or None when jobs are off."""
    service: JobService | None = app.extensions.get(EXTENSION_KEY)
    return service
