"""The `threads` dispatcher: worker threads in every server process that claim jobs and run them.

Each gunicorn worker process starts its own pool after the fork (threads started in the
master would not survive it): `JOBS_WORKERS` threads that claim the oldest runnable job
from the store, run it, and look again, waking at once when this process accepts a job
and every `JOBS_POLL_INTERVAL_S` otherwise. Because a claim is atomic in the store, any
number of processes and instances can share one database. A housekeeping thread delivers
due webhooks and purges expired jobs.

On start the pool simply claims: a job left `queued` by a stopped server, or `running`
under a lease that expired because its process died, is runnable, so it resumes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from serving.jobs.records import Job
from serving.jobs.runner import JobRunner, worker_name
from serving.jobs.store import JobStore, StoreError

log = logging.getLogger("serving.jobs.pool")


class WorkerPool:
    """Claims and runs jobs in background threads of this process."""

    def __init__(
        self,
        store: JobStore,
        runner: JobRunner,
        *,
        workers: int,
        lease_s: float,
        poll_interval_s: float,
        housekeeping: Callable[[], None],
        prepare: Callable[[], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._runner = runner
        self._workers = workers
        self._lease_s = lease_s
        self._poll_interval_s = poll_interval_s
        self._housekeeping = housekeeping
        self._prepare = prepare
        self._clock = clock
        self._wake_workers = threading.Condition()
        self._wake_housekeeping = threading.Event()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def started(self) -> bool:
        return bool(self._threads)

    def start(self) -> None:
        """Start the threads (once per process; call it after the fork)."""
        if self._threads:
            return
        for index in range(self._workers):
            self._threads.append(threading.Thread(target=self._work, name=f"job-worker-{index}", daemon=True))
        self._threads.append(threading.Thread(target=self._housekeep, name="job-housekeeping", daemon=True))
        for thread in self._threads:
            thread.start()
        log.info("job pool started: %d worker threads", self._workers)

    def wake(self) -> None:
        """A job was queued in this process: let an idle worker claim it now."""
        with self._wake_workers:
            self._wake_workers.notify()

    def job_finished(self, job: Job) -> None:
        if job.webhook_url is not None:
            self._wake_housekeeping.set()

    def stop(self, timeout_s: float) -> bool:
        """Stop claiming, and wait up to `timeout_s` for running jobs; True if none is left.

        A job still running when the process exits keeps its lease until it expires,
        then another process runs it again.
        """
        self._stopping.set()
        with self._wake_workers:
            self._wake_workers.notify_all()
        self._wake_housekeeping.set()
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        left = [t.name for t in self._threads if t.is_alive() and t.name.startswith("job-worker")]
        if left:
            log.warning("stopping with %d job(s) still running; their leases will expire", len(left))
        else:
            log.info("job pool stopped in %.2f s", timeout_s - max(0.0, deadline - time.monotonic()))
        return not left

    def _work(self) -> None:
        worker = worker_name()
        while not self._stopping.is_set():
            if not self._runner.slots.acquire(timeout=self._poll_interval_s):
                continue  # every slot is held (a timed-out model call still running)
            try:
                self._prepare()
                claim = self._store.claim_next(worker, self._lease_s, self._clock())
            except StoreError as exc:
                self._runner.slots.release()
                log.warning("claiming a job failed: %s", exc)
                self._idle()
                continue
            except Exception:
                self._runner.slots.release()
                raise
            if claim is None:
                self._runner.slots.release()
                self._idle()
                continue
            try:
                self._runner.run(claim)  # hands the slot to the model call
            except StoreError as exc:
                # The outcome could not be written; the lease expires and the job runs again.
                log.error("job %s: recording its outcome failed: %s", claim.job_id, exc)
            except Exception:
                log.exception("job %s: the runner failed", claim.job_id)

    def _idle(self) -> None:
        with self._wake_workers:
            if not self._stopping.is_set():
                self._wake_workers.wait(self._poll_interval_s)

    def _housekeep(self) -> None:
        while not self._stopping.is_set():
            try:
                self._housekeeping()
            except StoreError as exc:
                log.warning("job housekeeping failed: %s", exc)
            except Exception:
                log.exception("job housekeeping failed")
            self._wake_housekeeping.wait(self._poll_interval_s)
            self._wake_housekeeping.clear()
