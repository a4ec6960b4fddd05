"""Prediction logging (opt-in): one structured log entry per sampled prediction.

With `PREDICTION_LOG=true`, a `PREDICTION_LOG_SAMPLE_RATE` fraction of the requests to a
model's predict routes (the views marked `@logs_predictions`: `POST /v1/<Name>`,
`POST /v1/models/<Name>:predict` and Vertex AI's predict route) each gets one entry from
the `serving.prediction` logger, message `prediction`, with the fields `model`,
`model_version`, `request_id`, `status`, `latency_ms`, `input_bytes` and `input_sha256`
(a digest of the request body), and `input` (the body as text, at most 64 KiB) only when
`PREDICTION_LOG_INPUT=true`. Cloud Logging reads the line from stdout; a log sink to
BigQuery makes it a table (see docs/artifacts.md).

Logging must never fail or slow a request: the request thread only samples and hands
the entry to a bounded queue (dropping it, and counting the drop, when the queue is
full); a background thread per process hashes the body and writes the line. The queue
and thread are hand-written rather than `logging.handlers.QueueHandler`, because that
would still hash the body on the request thread.
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import random
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Response, current_app, request

from serving.observability.logs import current_model, current_model_version, current_request_id, request_started

log = logging.getLogger("serving.prediction")

F = TypeVar("F", bound=Callable[..., Any])

# Set on a view function by `logs_predictions`.
_PREDICTION_ATTR = "_serving_logs_predictions"
MAX_LOGGED_INPUT_BYTES = 64 * 1024
_QUEUE_SIZE = 1024
# Sampling draws from the OS, not the `random` module's shared generator, which handlers may
# seed (all workers would then sample the same requests) and which sampling would advance.
_SAMPLER = random.SystemRandom()


class PredictionLog:
    """Samples predictions and writes their entries from a background thread."""

    def __init__(self, sample_rate: float, include_input: bool) -> None:
        self.sample_rate = sample_rate
        self.include_input = include_input
        self.dropped = 0
        self._pid: int | None = None
        self._queue: queue.Queue[tuple[dict[str, Any], bytes]] = queue.Queue(_QUEUE_SIZE)
        self._start_lock = threading.Lock()

    def sampled(self) -> bool:
        """True for the fraction of calls that `sample_rate` says."""
        return self.sample_rate >= 1.0 or _SAMPLER.random() < self.sample_rate

    def submit(self, fields: dict[str, Any], body: bytes) -> None:
        """Queue one entry; never blocks, never raises."""
        try:
            self._ensure_thread()
            self._queue.put_nowait((fields, body))
        except (queue.Full, RuntimeError):  # full, or a thread that cannot start: drop the entry
            self.dropped += 1

    def flush(self, timeout: float = 5.0) -> None:
        """Wait until every queued entry is written (for tests and shutdown)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)

    def _ensure_thread(self) -> None:
        # One thread per process, started on first use: gunicorn forks after the app is
        # built, and a thread started in the master would not exist in the workers.
        if self._pid == os.getpid():
            return
        with self._start_lock:
            if self._pid == os.getpid():
                return
            self._queue = queue.Queue(_QUEUE_SIZE)
            threading.Thread(target=self._write_entries, name="prediction-log", daemon=True).start()
            self._pid = os.getpid()

    def _write_entries(self) -> None:
        entries = self._queue
        while True:
            fields, body = entries.get()
            try:
                fields["input_bytes"] = len(body)
                fields["input_sha256"] = hashlib.sha256(body).hexdigest()
                if self.include_input:
                    fields["input"] = body[:MAX_LOGGED_INPUT_BYTES].decode("utf-8", "replace")
                log.info("prediction", extra=fields)
            except Exception:  # noqa: BLE001 (a broken handler or stream must not end the thread)
                self.dropped += 1
            finally:
                entries.task_done()


def logs_predictions(view: F) -> F:
    """Mark a view function as a prediction: its requests are sampled into the prediction log."""
    setattr(view, _PREDICTION_ATTR, True)
    return view


def _is_prediction() -> bool:
    view = current_app.view_functions.get(request.endpoint or "")
    return bool(getattr(view, _PREDICTION_ATTR, False))


def create_prediction_log(enabled: bool, sample_rate: float, include_input: bool) -> PredictionLog | None:
    """The prediction log `PREDICTION_LOG*` ask for, or None when it is off."""
    if not enabled or sample_rate <= 0:
        return None
    return PredictionLog(sample_rate, include_input)


def prediction_logger(prediction_log: PredictionLog) -> Callable[[Response], Response]:
    """After-request step: submit a sampled prediction's entry (it must run after the version is known)."""

    def _log_prediction(response: Response) -> Response:
        try:
            if not _is_prediction() or not prediction_log.sampled():
                return response
            started = request_started()
            fields = {
                "model": current_model(),
                "model_version": current_model_version(),
                "request_id": current_request_id(),
                "status": response.status_code,
                "latency_ms": round((time.perf_counter() - started) * 1000, 3) if started is not None else None,
            }
            prediction_log.submit(fields, request.get_data(cache=True))
        except Exception:  # noqa: BLE001 (logging never fails a request)
            prediction_log.dropped += 1
        return response

    return _log_prediction
