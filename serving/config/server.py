"""Settings of the server process: binding, gunicorn, request size, CORS, logs, metrics, debug."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from serving.config import parsers
from serving.config.fields import SettingsError, setting

METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"

# App Engine standard rejects requests over 32 MB (whether read as 10^6 or 2^20 bytes)
# before they reach the app; staying a little under it means our own 413 (JSON, with a
# message) is what clients see.
_DEFAULT_MAX_REQUEST_BYTES = 30 * 1024 * 1024


@dataclass(frozen=True)
class ServerSettings:
    host: str = setting("HOST", "0.0.0.0", "Address gunicorn and `python main.py` bind to.")
    port: int = setting(
        "PORT",
        8080,
        "Port to listen on. App Engine and Cloud Run set it; 8080 otherwise.",
        parsers.int_between(1, 65535),
    )
    workers: int = setting(
        "GUNICORN_WORKERS",
        2,
        "gunicorn worker processes (each loads every model once).",
        parsers.int_between(1, 64),
    )
    threads: int = setting(
        "GUNICORN_THREADS",
        8,
        "Threads per gunicorn worker (request threads): concurrent requests per worker, "
        "and so the largest batch one worker can gather.",
        parsers.int_between(1, 256),
    )
    timeout_s: int = setting(
        "GUNICORN_TIMEOUT",
        60,
        "Seconds a worker may be silent before gunicorn's master restarts it.",
        parsers.int_between(1, 3600),
    )
    graceful_timeout_s: int = setting(
        "GUNICORN_GRACEFUL_TIMEOUT",
        8,
        "Seconds in-flight requests get to finish after SIGTERM (Cloud Run allows 10).",
        parsers.int_between(1, 3600),
    )
    body_read_timeout_s: float = setting(
        "BODY_READ_TIMEOUT_S",
        60.0,
        "Seconds a request's whole body may take to arrive, from the end of its headers; a "
        "body that stops arriving gets 408 and its connection is closed. 0: no deadline.",
        parsers.float_between(0, 3600),
    )
    max_request_bytes: int = setting(
        "MAX_REQUEST_BYTES",
        _DEFAULT_MAX_REQUEST_BYTES,
        "Largest request body accepted; larger ones get 413 (App Engine's own limit is 32 MB).",
        parsers.int_between(1024, 1024 * 1024 * 1024),
    )


@dataclass(frozen=True)
class HttpSettings:
    cors_origins: tuple[str, ...] = setting(
        "CORS_ORIGINS",
        ("*",),
        "Comma-separated origins allowed to call the API from a browser; `*` for any (never with credentials).",
        parsers.parse_csv,
    )

    def check_http(self) -> None:
        """Reject a CORS origin list that mixes `*` with named origins."""
        if "*" in self.cors_origins and len(self.cors_origins) > 1:
            raise SettingsError(
                f"CORS_ORIGINS={','.join(self.cors_origins)!r} is not valid: `*` cannot be combined with named origins"
            )


@dataclass(frozen=True)
class UploadSettings:
    """multipart/form-data and raw binary bodies (docs/uploads.md)."""

    form_max_parts: int = setting(
        "FORM_MAX_PARTS",
        100,
        "Most parts one `multipart/form-data` request may hold (Werkzeug's `max_form_parts`); more is a 413.",
        parsers.int_between(1, 100_000),
    )
    form_max_field_bytes: int = setting(
        "FORM_MAX_FIELD_BYTES",
        1024 * 1024,
        "Largest text (not file) part of a `multipart/form-data` request, held in memory (Werkzeug's "
        "`max_form_memory_size`); larger is a 413. File parts are bounded by `MAX_REQUEST_BYTES` alone.",
        parsers.int_between(128 * 1024, 1024 * 1024 * 1024),
    )
    upload_spool_bytes: int = setting(
        "UPLOAD_SPOOL_BYTES",
        512 * 1024,
        "Bytes of an uploaded file part kept in memory; past this it is spooled to an unnamed temporary "
        "file, closed (and so deleted) before the request ends.",
        parsers.int_between(0, 1024 * 1024 * 1024),
    )
    upload_spool_dir: Path | None = setting(
        "UPLOAD_SPOOL_DIR",
        None,
        "Directory of those temporary files; unset: Python's `tempfile.gettempdir()` (`TMPDIR`, else /tmp).",
        parsers.path,
    )


@dataclass(frozen=True)
class LoggingSettings:
    log_level: str = setting("LOG_LEVEL", "INFO", "Lowest level logged.", parsers.log_level)
    log_format: str = setting(
        "LOG_FORMAT",
        "auto",
        "`json`: one JSON object per line; `text` for humans; `gcp`: google-cloud-logging's structured "
        "handler (trace, source location, labels); `auto`: `gcp` on Google Cloud, `json` elsewhere.",
        parsers.one_of("auto", "gcp", "json", "text"),
    )
    request_log_sample_rate: float | None = setting(
        "REQUEST_LOG_SAMPLE_RATE",
        None,
        "Fraction of successful requests (status below 400) that get the app's own per-request log line; "
        "4xx and 5xx are always logged. Unset or `auto`: 0 on App Engine, Cloud Run and Cloud Functions, whose "
        "request log already records every request (the app's other lines still carry its trace and request "
        "id), 1 elsewhere, where that line is the only record.",
        parsers.sample_rate_or_auto,
    )


@dataclass(frozen=True)
class MetricsSettings:
    metrics: bool = setting(
        "METRICS", True, "Record Prometheus metrics and serve them at `GET /metrics`.", parsers.parse_bool
    )
    metrics_dir: Path | None = setting(
        METRICS_DIR_ENV,
        None,
        "Directory where each gunicorn worker writes its metrics; unset: gunicorn.conf.py makes a private "
        "one per start and removes it at exit. A set one is emptied of metric files at start.",
        parsers.path,
    )
    metrics_write_s: float = setting(
        "METRICS_WRITE_S",
        1.0,
        "How often each process writes the requests, model calls and queue depths it counted to the metrics "
        "(a scrape shows another worker's up to this late; its own at once). 0: each as it happens, at about "
        "10 us more CPU per request.",
        parsers.float_between(0, 60),
    )


@dataclass(frozen=True)
class DebugSettings:
    flask_debug: bool = setting(
        "FLASK_DEBUG", False, "Flask debug mode for `python main.py`; refused on Google Cloud.", parsers.parse_bool
    )


def ensure_metrics_dir(configured: Path) -> None:
    """Create a configured `PROMETHEUS_MULTIPROC_DIR` if it is missing; refuse one that cannot be a directory."""
    try:
        configured.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SettingsError(f"{METRICS_DIR_ENV}={str(configured)!r} is not valid: {exc.strerror}") from None
    if not configured.is_dir():
        raise SettingsError(f"{METRICS_DIR_ENV}={str(configured)!r} is not valid: not a directory")


def check_metrics_multiprocess(directory: Path, *, multiprocess: bool, environ_dir: str | None) -> None:
    """Refuse metrics in `directory` unless prometheus-client runs in multiprocess mode on it."""
    if not multiprocess or environ_dir != str(directory):
        raise SettingsError(
            f"{METRICS_DIR_ENV}={str(directory)!r} must be set in the environment before the server starts "
            "(prometheus-client was already imported without it)"
        )
    if not directory.is_dir():
        raise SettingsError(f"{METRICS_DIR_ENV}={str(directory)!r} is not valid: not a directory")


@dataclass(frozen=True)
class PredictionLogSettings:
    prediction_log: bool = setting(
        "PREDICTION_LOG",
        False,
        "Write one structured log entry per sampled prediction (model, version, request id, latency, "
        "input digest), e.g. for a BigQuery log sink.",
        parsers.parse_bool,
    )
    prediction_log_sample_rate: float = setting(
        "PREDICTION_LOG_SAMPLE_RATE",
        1.0,
        "Fraction of predictions that `PREDICTION_LOG` logs (0 to 1).",
        parsers.float_between(0, 1),
    )
    prediction_log_input: bool = setting(
        "PREDICTION_LOG_INPUT",
        False,
        "Also put each logged prediction's raw input (the request body, up to 64 KiB) in its entry.",
        parsers.parse_bool,
    )
