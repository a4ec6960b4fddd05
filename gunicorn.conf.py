"""gunicorn settings for App Engine, Cloud Run and local production runs.

Every value comes from the same `Settings` the app uses (docs/configuration.md lists them), so a
bad environment variable stops gunicorn with the variable's name before it forks.
"""

from __future__ import annotations

import gc
import select
from pathlib import Path
from typing import Any

from gunicorn.glogging import Logger

from serving.config.settings import Settings
from serving.observability.metrics import mark_worker_dead, prepare_multiprocess_dir, remove_private_dir
from serving.platform.gunicorn_hardening import harden_gunicorn

_settings = Settings.from_env()

# Metrics: every worker writes its counts to files in one directory, which the
# prometheus-client library finds through PROMETHEUS_MULTIPROC_DIR when the app is
# imported; so it is prepared here, before gunicorn loads the app. Unset, a private
# directory is made for this start and removed at exit; a set one is emptied of old
# counts. (A reload re-reads this file with the variable already ours: keep the counts.)
_metrics_dir: Path | None = None
_metrics_dir_private = False
if _settings.metrics:
    _metrics_dir, _metrics_dir_private = prepare_multiprocess_dir(_settings.metrics_dir)

# App Engine and Cloud Run route traffic to $PORT on all interfaces; Vertex AI to
# $AIP_HTTP_PORT, which takes precedence when set.
bind = f"{_settings.host}:{_settings.listen_port}"

# gthread: a few processes, each with threads. Model code (numpy, scikit-learn, torch)
# releases the GIL for its heavy parts, so threads overlap inference with HTTP work, and
# concurrent requests in one process can be batched together (serving/runtime/batching.py).
# Chosen by measurement (bench/NOTES.md, 2 cores, wrk at 16 and 64 connections): `sync`
# workers serve one request per process at a time, so nothing can be batched and every
# request opens a new connection; gthread keeps connections alive. Threads: 8 per worker
# served the most requests for both Digits and XXXModel; 16 and 32 lost 5-25% to threads
# contending for the GIL (they helped only while the forest cost 7 ms a call, by making
# batches larger); 4 was no faster and caps a batch at 4. Keep one worker per
# core; raise GUNICORN_THREADS for models that wait on I/O or whose calls batching hides.
# Re-measured for 64 clients after issue 24 (Digits decoding on request threads, no log
# line per request; bench/NOTES.md, load 19-24, one run each): 4 threads spent the least
# CPU per request (Digits 1.09 ms, XXXModel 0.55) against 8 (1.17, 0.68) and 16 (1.77,
# 0.70). Measured again on a quiet machine once the request path was leaner (bench/NOTES.md,
# issue 24's second round): 4 and 8 threads gave Digits and XXXModel the same throughput and
# CPU per request at 16 and 64 clients, and SentenceEmbedding half-size batches with 4, so
# 8 stays. gunicorn's listen backlog (2048) is far above
# 64 clients, so it stays; the batcher's wait is bounded by a model call's duration,
# which is now the forest alone (about 0.1-0.3 ms), so it needs no setting either.
#
# CPU-heavy models (SentenceEmbedding: 2-6 ms of CPU per text, docs/performance-heavy-models.md):
# each worker has its own ONNX Runtime session with cores / workers threads
# (ONNX_INTRA_OP_THREADS=0), so two workers never run more model threads than cores. A
# worker holds at most `threads` requests, and a batch settles at about half of that (4
# texts here): 2.6-3.0 ms of CPU per text against 2.0 at 16. A server of such a model
# alone should run GUNICORN_WORKERS=1 GUNICORN_THREADS=16 (measured: batches of 8, 14-21%
# less CPU per request, p99 63 ms against 291 at 16 clients, one copy of the model, ONNX
# Runtime on both cores); with every model in one server 2 x 8 stays, because the cheap
# models, bound by HTTP work under one GIL, serve 21-46% less from one process.
#
# serving/platform/gunicorn_worker.py: gthread, except that a worker holding more connections
# than a sibling leaves a new one to it for a few milliseconds; plain gthread let one
# process take 14 of 16 keep-alive clients while the other idled.
# serving/platform/gunicorn_followers.py: the same, with the request threads taking readable
# connections from one epoll themselves instead of through gthread's main loop and pool,
# which cost a small request more CPU than the app did (bench/NOTES.md). Linux only.
worker_class = (
    "serving.platform.gunicorn_followers.FollowerThreadWorker"
    if hasattr(select, "epoll")
    else "serving.platform.gunicorn_worker.BalancedThreadWorker"
)
workers = _settings.workers
threads = _settings.threads

# A worker that is silent this long is killed and replaced by the master.
timeout = _settings.timeout_s
# Cloud Run sends SIGTERM and kills 10 s later: finish in-flight requests before that.
graceful_timeout = _settings.graceful_timeout_s
# Google's front end keeps connections to instances open; keep ours longer than its
# idle timeout would need, but short enough not to pin threads.
keepalive = 5

# Load the app (and with MODEL_LOADING=eager, every model) once in the master, then fork:
# workers share the model memory copy-on-write and start serving at once.
preload_app = True

# Logs go to stdout/stderr only: App Engine's filesystem is read-only and both platforms
# ship the standard streams to Cloud Logging. The app logs every request itself, as JSON.
accesslog = None


class _AppLogsRequests(Logger):  # type: ignore[misc]
    """gunicorn's logger without its access log, which the app writes itself.

    With `logconfig_dict` set, gunicorn formats an access line for every request even
    when nothing prints it: about 3% of a worker's time in a profile, for nothing.
    """

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        return None


logger_class = _AppLogsRequests
errorlog = "-"
loglevel = _settings.log_level.lower()
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    # gunicorn's own lines go to the root logger, where the app (loaded before gunicorn
    # logs anything, thanks to preload_app) installed the handler LOG_FORMAT chose: one
    # format for every line, Cloud Logging's included. gunicorn replaces its defaults key by
    # key, so the root logger is named here to drop its console handler.
    "root": {"level": _settings.log_level, "handlers": []},
    "loggers": {
        "gunicorn.error": {"level": _settings.log_level, "handlers": [], "propagate": True},
    },
}

# Request line and header limits (gunicorn's defaults, stated): gunicorn refuses a longer
# request line (414) or more or larger headers (431) before the app sees them, in JSON
# (see harden_gunicorn below).
#
# Slow clients: a gthread worker gives a connection a thread once its first bytes arrive,
# and the thread stays with it while the request trickles in, so one instance withstands
# fewer than workers x threads slow clients; Google's front end (App Engine, Cloud
# Run) receives each request whole before it reaches gunicorn. tests/http/test_hostile_http.py
# checks that a handful of them leaves the server answering.
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 8190

# --- Google Cloud platform ---
# Forwarding headers are trusted in one place only, the app's PROXY_HOPS (werkzeug's
# ProxyFix: one hop, Google's front end, on App Engine, Cloud Run and Cloud Functions).
# gunicorn would otherwise also honour X-Forwarded-Proto from any local peer.
forwarded_allow_ips = ""
# gunicorn's control socket lives in $HOME, which is read-only on App Engine and absent
# for the Cloud Run image's user, and nobody can reach it on a serverless instance.
control_socket_disable = True
# gunicorn's own error pages (e.g. 431 for oversized headers) become JSON like the app's,
# and the `Server` header stops naming gunicorn (serving/platform/gunicorn_hardening.py says how).
harden_gunicorn()

# --- server hooks ---


def pre_request(worker: Any, req: Any) -> None:
    """Nothing: gunicorn's default logs each request at debug level, which the app does."""


def on_starting(server: Any) -> None:
    """Say where the workers' metrics go."""
    if _metrics_dir is not None:
        kind = "private, removed at exit" if _metrics_dir_private else "PROMETHEUS_MULTIPROC_DIR"
        server.log.info("metrics directory: %s (%s)", _metrics_dir, kind)


def when_ready(server: Any) -> None:
    """Before the first fork: freeze what the app has allocated so far.

    Objects in the frozen generation are never visited by the garbage collector, so the
    workers do not write to (and so copy) the memory pages of the preloaded models.
    """
    gc.collect()
    gc.freeze()


def child_exit(server: Any, worker: Any) -> None:
    """A worker exited: drop its queue-depth gauge from the merged metrics."""
    if _metrics_dir is not None:
        mark_worker_dead(worker.pid, _metrics_dir)


def on_exit(server: Any) -> None:
    """gunicorn is stopping: remove this start's private metrics directory."""
    if _metrics_dir is not None and _metrics_dir_private:
        remove_private_dir(_metrics_dir)


# Asynchronous jobs: each worker process starts its own job threads after the fork
# (threads started in the master before it would not survive), and on shutdown gives
# running jobs the graceful period to finish. A job still running after that keeps its
# lease until it expires, and then another process runs it again.
#
# Models whose artifacts come from Cloud Storage load in each worker's background, once
# it listens: the master loads only local ones (serving/http/lifecycle.py).
def post_worker_init(worker: Any) -> None:
    from serving.http.lifecycle import start_worker
    from serving.jobs.hooks import start_background_jobs

    start_background_jobs(worker.wsgi)
    start_worker(worker.wsgi)


#
# Then, before the interpreter finalizes, the queued prediction-log entries are written
# and every ONNX Runtime call of the worker returns and its sessions are destroyed: a
# thread still inside ONNX Runtime at finalization aborts the process
# (serving/runtime/onnx_process.py), and an aborted worker loses what its exit handlers
# would have saved.
#
# The worker is deaf to stop signals from here on: it is already stopping, and a second
# signal would cut that short or, once the interpreter finalizes, kill it
# (serving/platform/gunicorn_worker.py, `ignore_stop_signals`).
def worker_exit(server: Any, worker: Any) -> None:
    import time

    from serving.http.lifecycle import finish_worker
    from serving.jobs.hooks import stop_background_jobs
    from serving.platform.gunicorn_worker import ignore_stop_signals

    ignore_stop_signals()
    deadline = time.monotonic() + max(1.0, _settings.graceful_timeout_s - 1)
    stop_background_jobs(worker.wsgi, max(0.5, _settings.graceful_timeout_s - 2))
    busy = finish_worker(worker.wsgi, max(0.5, deadline - time.monotonic()))
    if busy:
        server.log.warning("ONNX models still running at exit (the worker may abort): %s", ", ".join(busy))
