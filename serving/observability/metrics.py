"""Prometheus metrics at `GET /metrics`, counted across every gunicorn worker.

What is recorded (all names start with `model_serving_`):

- `requests_total` and `request_duration_seconds` (histogram), by `route` (the URL rule,
  e.g. `/v1/<name>`), `model` (empty when the request named none) and `status`;
- `batch_size` and `batch_duration_seconds` (histograms), by `model`: one observation per
  model call, so `batch_size` above 1 shows requests being batched;
- `batch_queue_depth` (gauge, summed over live workers), by `model`;
- `jobs_total`, by `model` and `state`: `Metrics.count_job()` is the API the job runner
  calls each time a job enters a state.

Under gunicorn each worker is its own process, so `prometheus-client` runs in multiprocess
mode: every worker writes its values to files in `PROMETHEUS_MULTIPROC_DIR` and a scrape
of any worker merges them all. The library reads that variable when it is imported, so
`gunicorn.conf.py` calls `prepare_multiprocess_dir()` before the app is loaded, marks
each dead worker with `mark_worker_dead()` and removes a private directory at exit with
`remove_private_dir()`. Without the variable (Flask's development server, Cloud
Functions, tests), each app keeps its metrics in memory in its own registry.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from flask import Flask, Response, request

from serving.config.server import check_metrics_multiprocess, ensure_metrics_dir
from serving.observability.logs import current_model, request_started
from serving.observability.metric_tally import Tally

log = logging.getLogger("serving.observability.metrics")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# The files prometheus-client writes in multiprocess mode (`<type>_<pid>.db`); preparing
# a directory removes these and nothing else.
_METRIC_FILE = re.compile(r"^(?:counter|histogram|summary|gauge_[a-z]+)_\d+\.db$")
_PRIVATE_PREFIX = "model-serving-metrics-"
# Which process prepared the directory, and how: `<pid>:<private|configured>:<path>`.
_OWNER_ENV = "MODEL_SERVING_METRICS_DIR_OWNER"

# Request latency: from a cached answer (~1 ms) to a slow model (60 s, gunicorn's timeout).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
# Each histogram's upper bounds as prometheus-client keeps them, `+Inf` last.
_LATENCY_BOUNDS = (*LATENCY_BUCKETS, float("inf"))
_BATCH_SIZE_BOUNDS = (*BATCH_SIZE_BUCKETS, float("inf"))


# --- the multiprocess directory (called from gunicorn.conf.py, before the app loads) ---


def prepare_multiprocess_dir(configured: Path | None) -> tuple[Path, bool]:
    """The directory the workers write metrics to, ready for a fresh start.

    A `configured` directory is created if missing and emptied of the metric files an
    earlier run left (counts must start from zero; nothing else in it is touched). With
    none, a private directory is made (mode 0700). Either way `PROMETHEUS_MULTIPROC_DIR`
    is set for this process and the workers it forks. Returns `(path, private)`.

    Called again in the same process (gunicorn re-reads its config file on SIGHUP), it
    returns what it prepared the first time and removes nothing.
    """
    owner = os.environ.get(_OWNER_ENV, "").split(":", 2)
    if len(owner) == 3 and owner[0] == str(os.getpid()) and os.environ.get(MULTIPROC_ENV) == owner[2]:
        return Path(owner[2]), owner[1] == "private"
    if configured is None:
        path = Path(tempfile.mkdtemp(prefix=_PRIVATE_PREFIX))
        private = True
    else:
        path = configured
        ensure_metrics_dir(path)
        for stale in _metric_files(path):
            stale.unlink(missing_ok=True)
        private = False
    os.environ[MULTIPROC_ENV] = str(path)
    os.environ[_OWNER_ENV] = f"{os.getpid()}:{'private' if private else 'configured'}:{path}"
    return path, private


def _metric_files(directory: Path) -> Iterable[Path]:
    for entry in directory.iterdir():
        if _METRIC_FILE.match(entry.name) and entry.is_file() and not entry.is_symlink():
            yield entry


def mark_worker_dead(pid: int, directory: Path) -> None:
    """Drop a dead worker's live gauges (its queue depth) from the merged view."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, str(directory))  # type: ignore[no-untyped-call]


def remove_private_dir(path: Path) -> None:
    """Delete a directory `prepare_multiprocess_dir()` made; never a configured one."""
    if path.name.startswith(_PRIVATE_PREFIX) and path.parent == Path(tempfile.gettempdir()):
        shutil.rmtree(path, ignore_errors=True)


# --- what the app records ---


class Metrics:
    """The metrics API the app and its parts call; this base records nothing (METRICS=false)."""

    enabled = False

    def observe_request(self, route: str, model: str, status: int, seconds: float) -> None:
        """One HTTP request ended with `status` after `seconds`."""

    def observe_batch(self, model: str, size: int, seconds: float) -> None:
        """One model call ran `size` requests in `seconds`."""

    def set_queue_depth(self, model: str, depth: int) -> None:
        """`depth` requests now wait for `model` in this process."""

    def count_rows(self, route: str, model: str, outcome: str, rows: int) -> None:
        """`rows` rows of one request to `route` ended as `outcome` (e.g. `null`: a bad row answered null)."""

    def count_job(self, model: str, state: str) -> None:
        """A job for `model` entered `state` (e.g. queued, running, succeeded, failed)."""

    def set_model_version(self, model: str, version: str) -> None:
        """`model` has loaded and serves `version` (its VERSION, plus its artifacts' short digest)."""

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        """The metrics in the format `accept` asks for, and its content type."""
        raise NotImplementedError("metrics are disabled")


class PrometheusMetrics(Metrics):
    """Metrics kept by `prometheus-client`, across processes when `directory` is given.

    With `write_every_s` above 0, requests, model calls and queue depths are summed in
    the process and written that often (serving/observability/metric_tally.py); a scrape
    writes its own process's first. With 0, each is written as it happens.
    """

    enabled = True

    def __init__(self, directory: Path | None, write_every_s: float = 0.0) -> None:
        if directory is not None:
            _require_multiprocess_mode(directory)
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
        from prometheus_client.multiprocess import MultiProcessCollector

        self._export = CollectorRegistry()
        if directory is not None:
            # Values go to the files; a scrape reads every worker's files.
            MultiProcessCollector(self._export, path=str(directory))  # type: ignore[no-untyped-call]
            owner: CollectorRegistry | None = None
        else:
            owner = self._export
        labels = ("route", "model", "status")
        self._requests = Counter("model_serving_requests", "HTTP requests answered.", labels, registry=owner)
        self._latency = Histogram(
            "model_serving_request_duration_seconds",
            "Time from a request's start to its response, in seconds.",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=owner,
        )
        self._batch_size = Histogram(
            "model_serving_batch_size",
            "Requests run together in one model call (1: alone).",
            ("model",),
            buckets=BATCH_SIZE_BUCKETS,
            registry=owner,
        )
        self._batch_seconds = Histogram(
            "model_serving_batch_duration_seconds",
            "Time one model call took, in seconds.",
            ("model",),
            buckets=LATENCY_BUCKETS,
            registry=owner,
        )
        self._queue_depth = Gauge(
            "model_serving_batch_queue_depth",
            "Requests waiting for a model call.",
            ("model",),
            multiprocess_mode="livesum",
            registry=owner,
        )
        self._rows = Counter(
            "model_serving_rows",
            "Rows of multi-row protocol requests by outcome (null: a bad row answered null).",
            ("route", "model", "outcome"),
            registry=owner,
        )
        self._jobs = Counter("model_serving_jobs", "Jobs that entered each state.", ("model", "state"), registry=owner)
        # Info-style: 1 for each (model, version) loaded; `max` keeps the master's value
        # (eager loading happens there) alongside the workers'.
        self._model_info = Gauge(
            "model_serving_model_info",
            "1 for the version each loaded model serves (handler VERSION + artifacts digest).",
            ("model", "version"),
            multiprocess_mode="max",
            registry=owner,
        )
        # Resolving label values costs more than the update itself: keep the children.
        self._request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._model_children: dict[str, tuple[Any, Any, Any]] = {}
        self._tally = Tally(write_every_s) if write_every_s > 0 else None

    def observe_request(self, route: str, model: str, status: int, seconds: float) -> None:
        key = (route, model, status)
        children = self._request_children.get(key)
        if children is None:
            label_values = (route, model, str(status))
            children = (self._requests.labels(*label_values), self._latency.labels(*label_values))
            self._request_children[key] = children
        tally = self._tally
        if tally is None:
            children[0].inc()
            children[1].observe(seconds)
        else:
            tally.inc(children[0])
            tally.observe(children[1], _LATENCY_BOUNDS, seconds)

    def _for_model(self, model: str) -> tuple[Any, Any, Any]:
        children = self._model_children.get(model)
        if children is None:
            children = (
                self._batch_size.labels(model),
                self._batch_seconds.labels(model),
                self._queue_depth.labels(model),
            )
            self._model_children[model] = children
        return children

    def observe_batch(self, model: str, size: int, seconds: float) -> None:
        children = self._for_model(model)
        tally = self._tally
        if tally is None:
            children[0].observe(size)
            children[1].observe(seconds)
        else:
            tally.observe(children[0], _BATCH_SIZE_BOUNDS, size)
            tally.observe(children[1], _LATENCY_BOUNDS, seconds)

    def set_queue_depth(self, model: str, depth: int) -> None:
        if self._tally is None:
            self._for_model(model)[2].set(depth)
        else:
            self._tally.set(self._for_model(model)[2], depth)

    def count_rows(self, route: str, model: str, outcome: str, rows: int) -> None:
        self._rows.labels(route, model, outcome).inc(rows)

    def count_job(self, model: str, state: str) -> None:
        self._jobs.labels(model, state).inc()

    def set_model_version(self, model: str, version: str) -> None:
        self._model_info.labels(model, version).set(1)

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        from prometheus_client.exposition import choose_encoder

        encoder, content_type = choose_encoder(accept or "")
        if self._tally is not None:
            self._tally.flush()
        return encoder(self._export), content_type


def _require_multiprocess_mode(directory: Path) -> None:
    # prometheus-client picks its storage when first imported, from the environment.
    if "prometheus_client" not in sys.modules:
        os.environ.setdefault(MULTIPROC_ENV, str(directory))
    from prometheus_client import values

    check_metrics_multiprocess(
        directory,
        multiprocess=bool(getattr(values.ValueClass, "_multiprocess", False)),
        environ_dir=os.environ.get(MULTIPROC_ENV),
    )


def create_metrics(enabled: bool, directory: Path | None, write_every_s: float = 0.0) -> Metrics:
    """The app's metrics: recorded by Prometheus (see `PrometheusMetrics`), or nothing when disabled."""
    return PrometheusMetrics(directory, write_every_s) if enabled else Metrics()


# --- HTTP: recording each request, and the /metrics route ---


_CONVERTER = re.compile(r"<\w+:(\w+)>")


def request_observer(metrics: Metrics) -> Callable[[Response], Response] | None:
    """After-request step: count each request and its latency; None when metrics are off.

    The latency runs from the request's start as serving/observability/logs.py noted it.
    """
    if not metrics.enabled:
        return None

    routes: dict[str, str] = {}  # a rule's route label, worked out once per rule

    def _observe(response: Response) -> Response:
        started = request_started()
        if started is not None:
            rule = request._get_current_object().url_rule  # type: ignore[attr-defined]
            if rule is None:
                route = "unmatched"
            else:
                route = routes.get(rule.rule) or routes.setdefault(
                    # `/v1/<model:name>` is reported as `/v1/<name>`: converters are not the route.
                    rule.rule,
                    _CONVERTER.sub(r"<\1>", rule.rule),
                )
            metrics.observe_request(route, current_model() or "", response.status_code, time.perf_counter() - started)
        return response

    return _observe


def add_metrics_route(app: Flask, metrics: Metrics) -> None:
    """Serve `GET /metrics` (when metrics are enabled)."""
    if not metrics.enabled:
        return

    def _metrics() -> Response:
        body, content_type = metrics.exposition(request.headers.get("Accept"))
        return Response(body, content_type=content_type)

    app.add_url_rule("/metrics", "metrics", _metrics, methods=["GET"])
