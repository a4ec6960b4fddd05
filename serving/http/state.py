"""What one app instance holds: its settings, models and services, at `app.extensions`."""

from __future__ import annotations

from dataclasses import dataclass, field

from flask import Flask, current_app

from serving.config.settings import Settings
from serving.observability.metrics import Metrics
from serving.runtime.inference import Inference
from serving.runtime.registry import Registry

EXTENSION_KEY = "serving"


@dataclass
class ServingState:
    """The per-app state every route reads; built once by `create_app`."""

    settings: Settings
    registry: Registry
    inference: Inference
    # Prometheus metrics (a no-op `Metrics` when METRICS=false); the job runner counts
    # jobs with `metrics.count_job(model, state)`.
    metrics: Metrics = field(default_factory=Metrics)


def get_state(app: Flask | None = None) -> ServingState:
    """The `ServingState` of `app` (default: the app handling the current request)."""
    target = app if app is not None else current_app
    state: ServingState = target.extensions[EXTENSION_KEY]
    return state
