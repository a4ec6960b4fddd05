"""A gunicorn worker's last steps before its interpreter finalizes (the `worker_exit` hook).

gunicorn.conf.py calls `finish_worker` after the worker stopped taking requests and its
jobs stopped: it writes the prediction-log entries still queued (their thread is a daemon
thread, which finalization would end mid-queue) and closes this process's ONNX models
(serving/runtime/onnx_process.py: a thread still inside ONNX Runtime at finalization
aborts the process).
"""

from __future__ import annotations

import time
from typing import Any

from flask import Flask

from serving.http.state import EXTENSION_KEY, ServingState
from serving.runtime.onnx_process import close_onnx_models


def finish_worker(wsgi: Any, timeout_s: float) -> list[str]:
    """Flush the prediction log and close ONNX models within `timeout_s`; the models still busy."""
    deadline = time.monotonic() + timeout_s
    state = wsgi.extensions.get(EXTENSION_KEY) if isinstance(wsgi, Flask) else None
    if isinstance(state, ServingState) and state.prediction_log is not None:
        state.prediction_log.flush(max(0.1, (deadline - time.monotonic()) / 2))
    return close_onnx_models(max(0.1, deadline - time.monotonic()))
