"""A serving process's first and last steps: loading remote models, and what must happen before exit.

`start_worker` (gunicorn's `post_worker_init` hook) and the pipeline's "remote-models"
step (`remote_model_loader`, for servers without that hook) start loading, in the
background, the models whose artifacts come from Cloud Storage: the server answers
`/healthz` and serves the other models while those download (issue 22).

gunicorn.conf.py calls `finish_worker` (the `worker_exit` hook) after the worker stopped taking requests and its
jobs stopped: it writes the prediction-log entries still queued (their thread is a daemon
thread, which finalization would end mid-queue) and closes this process's ONNX models
(serving/runtime/onnx_process.py: a thread still inside ONNX Runtime at finalization
aborts the process).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from flask import Flask

from serving.http.state import EXTENSION_KEY, ServingState
from serving.runtime.onnx_process import close_onnx_models


def start_worker(wsgi: Any) -> list[str]:
    """gunicorn `post_worker_init` hook: start loading this worker's remote models; their names."""
    state = _state_of(wsgi)
    if state is None or state.settings.model_loading != "eager":
        return []
    return state.registry.load_remote_in_background()


def remote_model_loader(state: ServingState) -> Callable[[], None] | None:
    """Before-request step: start the remote models' background loading in this process (once).

    None (no hook, so no cost per request) with `MODEL_LOADING=lazy`, where each model
    loads at its first use, or when no model's files come from Cloud Storage.
    """
    if state.settings.model_loading != "eager":
        return None
    if not any(runtime.needs_remote_artifacts for runtime in state.registry):
        return None
    registry = state.registry

    def _start() -> None:
        registry.load_remote_in_background()

    return _start


def _state_of(wsgi: Any) -> ServingState | None:
    state = wsgi.extensions.get(EXTENSION_KEY) if isinstance(wsgi, Flask) else None
    return state if isinstance(state, ServingState) else None


def finish_worker(wsgi: Any, timeout_s: float) -> list[str]:
    """Flush the prediction log and close ONNX models within `timeout_s`; the models still busy."""
    deadline = time.monotonic() + timeout_s
    state = _state_of(wsgi)
    if state is not None and state.prediction_log is not None:
        state.prediction_log.flush(max(0.1, (deadline - time.monotonic()) / 2))
    return close_onnx_models(max(0.1, deadline - time.monotonic()))
