"""gunicorn settings for App Engine, Cloud Run and local production runs.

Every value comes from the same `Settings` the app uses (see the README's table), so a
bad environment variable stops gunicorn with the variable's name before it forks.
"""

from __future__ import annotations

from serving.gunicorn_hardening import harden_gunicorn
from serving.settings import Settings

_settings = Settings.from_env()

# App Engine and Cloud Run route traffic to $PORT on all interfaces; Vertex AI to
# $AIP_HTTP_PORT, which takes precedence when set.
bind = f"{_settings.host}:{_settings.listen_port}"

# gthread: a few processes, each with threads. Model code (numpy, scikit-learn, torch)
# releases the GIL for its heavy parts, so threads overlap inference with HTTP work, and
# concurrent requests in one process can be batched together.
worker_class = "gthread"
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
errorlog = "-"
loglevel = _settings.log_level.lower()
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "serving.logs.JsonFormatter"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
    # gunicorn replaces its defaults key by key: name the root logger so it does not point
    # at gunicorn's own (now absent) console handler. The app adds its handler to root.
    "root": {"level": _settings.log_level, "handlers": []},
    "loggers": {
        "gunicorn.error": {"handlers": ["stderr"], "level": _settings.log_level, "propagate": False},
    },
}

# Request line and header limits (gunicorn's defaults, stated): oversized headers get a
# 400 from gunicorn before they reach the app.
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 8190

# gunicorn's own error pages (e.g. 431 for oversized headers) become JSON like the app's,
# and the `Server` header stops naming gunicorn (serving/gunicorn_hardening.py says how).
harden_gunicorn()
