"""What one app instance holds: its settings, models and services, at `app.extensions`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from flask import Response, current_app
from flask.sansio.app import App

from serving.config.settings import Settings
from serving.errors import JobsUnavailable
from serving.observability.metrics import Metrics
from serving.observability.prediction_log import PredictionLog
from serving.runtime.inference import Inference
from serving.runtime.registry import ModelRuntime, Registry

EXTENSION_KEY = "serving"


class JobScheduler(Protocol):
    """Stores a payload as a job and answers 202 (serving.jobs.routes.submit)."""

    def __call__(
        self, runtime: ModelRuntime, payload: Any, *, idempotency_key: str | None, preferred: bool
    ) -> Response:
        """The 202 answer for the stored job."""


def _no_job_scheduler(runtime: ModelRuntime, payload: Any, *, idempotency_key: str | None, preferred: bool) -> Response:
    raise JobsUnavailable()


@dataclass(frozen=True)
class ServingState:
    """The per-app state every route reads; built once by `create_app`, never changed after."""

    settings: Settings
    registry: Registry
    inference: Inference
    # Prometheus metrics (a no-op `Metrics` when METRICS=false); the job runner counts
    # jobs with `metrics.count_job(model, state)`.
    metrics: Metrics = field(default_factory=Metrics)
    # Sampled prediction entries for a log sink (PREDICTION_LOG); None when off.
    prediction_log: PredictionLog | None = None
    # How `POST /v1/<Name>` schedules a job, handed in by the jobs package (which sits above
    # http/ in the layers), and whether a job store can honour a mere preference for one.
    schedule_job: JobScheduler = _no_job_scheduler
    jobs_enabled: bool = False


def get_state(app: App | None = None) -> ServingState:
    """The `ServingState` of `app` (default: the app handling the current request)."""
    # The proxy resolved once: an attribute read through it costs several times as much.
    target = app if app is not None else current_app._get_current_object()  # type: ignore[attr-defined]
    state: ServingState = target.extensions[EXTENSION_KEY]
    return state
