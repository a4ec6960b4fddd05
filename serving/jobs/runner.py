"""Running one claimed job: the model call through `Inference`, a lease heartbeat, a timeout.

Both dispatchers use `JobRunner.run`: the thread pool from its worker threads, Cloud Tasks
inside the run request. The job's timeout is the same time budget requests have
(serving/runtime/timebudget.py, the `Inference`'s own): the call runs on a call thread, so
a job that overruns is ended as `failed` while the call finishes in the background; its
result is then discarded, and the slot it holds is freed only when it really returns, so a
hung model cannot make the process start ever more threads.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from serving.errors import ApiError, GatewayTimeout, InternalError
from serving.jobs.records import Job, JobStatus
from serving.jobs.store import Claim, JobStore, StoreError
from serving.runtime.inference import Inference
from serving.runtime.registry import ModelStatus, Registry

log = logging.getLogger("serving.jobs.runner")

# A model still loading in this process: give the job back and try again this much later.
LOADING_RETRY_S = 2.0


def worker_name() -> str:
    """`host:pid:thread`, recorded on each claim (logs and the kill tests read it)."""
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_native_id()}"


class LeaseKeeper:
    """Extends the leases of the jobs this process runs, every third of a lease."""

    def __init__(self, store: JobStore, lease_s: float, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._lease_s = lease_s
        self._clock = clock
        self._claims: dict[str, Claim] = {}
        self._lost: set[str] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopped = False

    def hold(self, claim: Claim) -> None:
        """Keep `claim`'s lease alive until `drop`."""
        with self._lock:
            self._claims[claim.job_id] = claim
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="job-leases", daemon=True)
                self._thread.start()

    def drop(self, claim: Claim) -> None:
        with self._lock:
            self._claims.pop(claim.job_id, None)
            self._lost.discard(claim.job_id)

    def lost(self, claim: Claim) -> bool:
        """True once a heartbeat found the claim gone (canceled, or re-claimed elsewhere)."""
        with self._lock:
            return claim.job_id in self._lost

    def stop(self) -> None:
        """End the heartbeat thread (claims still held simply expire)."""
        self._stopped = True
        self._wake.set()

    def _loop(self) -> None:
        while not self._stopped:
            self._wake.wait(self._lease_s / 3)
            with self._lock:
                claims = list(self._claims.values())
            if not claims:
                continue
            try:
                lost = self._store.heartbeat(claims, self._lease_s, self._clock())
            except StoreError as exc:
                # The lease still runs; the next beat may get through before it expires.
                log.warning("lease heartbeat failed: %s", exc)
                continue
            if lost:
                with self._lock:
                    self._lost |= lost & set(self._claims)
                log.info("claims lost (canceled or taken over): %s", ", ".join(sorted(lost)))


@dataclass
class _Outcome:
    """What the job's model call ended with: its result, or what it raised."""

    result: Any = None
    error: BaseException | None = None


class JobRunner:
    """Runs claimed jobs to a terminal state; one per process."""

    def __init__(
        self,
        store: JobStore,
        registry: Registry,
        inference: Inference,
        leases: LeaseKeeper,
        *,
        default_timeout_s: float,
        slots: int,
        on_finished: Callable[[Job], None] | None = None,
        on_started: Callable[[Job], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._registry = registry
        self._inference = inference
        self._leases = leases
        self._default_timeout_s = default_timeout_s
        self._on_finished = on_finished
        self._on_started = on_started
        self._clock = clock
        # Held by each model call until it returns, including calls that timed out.
        self.slots = threading.BoundedSemaphore(max(slots, 1))

    def run(self, claim: Claim) -> Job | None:
        """Run the claimed job and record its outcome; the job after, or None if the claim was lost.

        The caller must hold one of `slots`; it is handed to the model call, which
        releases it when it returns.
        """
        job = claim.job
        # The submitting request's id ties the job's log lines to the 202 that accepted it.
        fields = {"job_id": job.id, "model": job.model, "attempt": job.attempts, "request_id": job.request_id}
        log.info("job %s started (attempt %d)", job.id, job.attempts, extra=fields)
        if self._on_started is not None:
            self._on_started(job)
        runtime = self._registry.get(job.model)
        if runtime is None:
            self.slots.release()
            error = {"code": "model_not_found", "message": f"No model named {job.model!r} is served any more"}
            return self._finish(claim, JobStatus.FAILED, None, error, fields)
        if runtime.status is ModelStatus.LOADING:
            self.slots.release()
            self._store.release(claim, self._clock() + LOADING_RETRY_S, self._clock())
            return None
        timeout_s = runtime.spec.timeout_s or self._default_timeout_s

        def call() -> _Outcome:
            try:
                # Validated at submit; again here because a deploy may have changed the schema.
                runtime.spec.input_validator.validate(job.payload)
                return _Outcome(result=self._inference.predict(runtime, job.payload))
            except BaseException as exc:  # noqa: BLE001 - every outcome is recorded on the job
                return _Outcome(error=exc)
            finally:
                self.slots.release()

        self._leases.hold(claim)
        outcome: _Outcome | None
        try:
            # The slots, not the model's degradation, bound the calls left running late.
            outcome = self._inference.budget.call(job.model, timeout_s, call, degrade=False)
        except GatewayTimeout:
            outcome = None  # the call runs on; its slot comes back when it ends
        finally:
            self._leases.drop(claim)
        if outcome is None:
            error = {"code": "timeout", "message": f"The job did not finish within {timeout_s:g} s"}
            log.error("job %s timed out after %g s", job.id, timeout_s, extra=fields)
            return self._finish(claim, JobStatus.FAILED, None, error, fields)
        if outcome.error is None:
            return self._finish(claim, JobStatus.SUCCEEDED, outcome.result, None, fields)
        return self._finish(claim, JobStatus.FAILED, None, self._error_document(outcome.error, fields), fields)

    def _error_document(self, exc: BaseException, fields: dict[str, Any]) -> dict[str, Any]:
        if isinstance(exc, InternalError):
            # Inference logged the traceback; the client gets what a 500 would tell it.
            return {"code": exc.code, "message": "The model failed on this input; quote the job id when reporting it"}
        if isinstance(exc, ApiError):
            return exc.body()
        log.error(
            "job %s: the model call raised %s", fields["job_id"], exc.__class__.__name__, exc_info=exc, extra=fields
        )
        return {"code": "internal", "message": "The model failed on this input; quote the job id when reporting it"}

    def _finish(
        self, claim: Claim, status: JobStatus, result: Any, error: dict[str, Any] | None, fields: dict[str, Any]
    ) -> Job | None:
        job = self._store.finish(claim, status, result, error, self._clock())
        if job is None:
            # Canceled meanwhile, or our lease expired and another process took the job
            # over: the store kept the other outcome and this one is dropped.
            log.info("job %s: result discarded, the claim was lost", claim.job_id, extra=fields)
            return None
        log.info("job %s %s", job.id, job.status.value, extra={**fields, "status": job.status.value})
        if self._on_finished is not None:
            self._on_finished(job)
        return job
