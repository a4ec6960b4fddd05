"""Every setting the server reads, parsed from the environment once.

`Settings.from_env()` is the only place that reads `os.environ` for the application;
handlers and models never do. A bad value raises `SettingsError` naming the variable and
the value it got, so a misconfigured deployment fails at start-up instead of at the
first request. `settings_table()` renders the README's configuration table, and a test
keeps the two in step.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from limits import parse_many

from serving.config.api_keys import ApiKey, parse_key_specs
from serving.security.secretmanager import parse_secret_name

PROJECT_ROOT = Path(__file__).resolve().parents[2]


class SettingsError(ValueError):
    """A setting has a value the server cannot use; the message names the variable."""


def _setting(
    env: str, default: Any, doc: str, parse: Callable[[str], Any] | None = None, *, secret: bool = False
) -> Any:
    # A secret setting's value is left out of error messages and of the object's repr.
    return field(default=default, repr=not secret, metadata={"env": env, "doc": doc, "parse": parse, "secret": secret})


def _parse_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError("expected one of true/false/1/0/yes/no/on/off")


def _parse_csv(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _int_between(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        value = int(raw.strip())
        if not low <= value <= high:
            raise ValueError(f"expected an integer from {low} to {high}")
        return value

    return parse


def _float_between(low: float, high: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        value = float(raw.strip())
        if not low <= value <= high:  # also rejects NaN
            raise ValueError(f"expected a number from {low} to {high}")
        return value

    return parse


def _one_of(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return value

    return parse


def _path(raw: str) -> Path:
    if not raw.strip():
        raise ValueError("expected a path")
    path = Path(raw.strip())
    return path if path.is_absolute() else PROJECT_ROOT / path


def _log_level(raw: str) -> str:
    value = raw.strip().upper()
    if value not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise ValueError("expected DEBUG, INFO, WARNING, ERROR or CRITICAL")
    return value


def _rate_limits(raw: str) -> str:
    value = raw.strip()
    if value:
        try:
            parse_many(value)
        except ValueError:
            raise ValueError("expected limits such as `100/minute;10/second` (separated by `;`)") from None
    return value


def _storage_url(raw: str) -> str | None:
    value = raw.strip()
    if value and not value.startswith(("memory://", "redis://", "rediss://", "redis+unix://")):
        raise ValueError("expected memory://, redis://host:port[/db] or rediss://...")
    return value or None


def _collection_name(raw: str) -> str:
    value = raw.strip()
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,100}", value):
        raise ValueError("expected letters, digits, '_' or '-' (at most 100)")
    return value


def _tasks_queue(raw: str) -> str:
    value = raw.strip()
    if value and not re.fullmatch(r"projects/[^/\s]+/locations/[^/\s]+/queues/[A-Za-z0-9-]{1,100}", value):
        raise ValueError("expected projects/PROJECT/locations/LOCATION/queues/QUEUE")
    return value


def _base_url(raw: str) -> str:
    value = raw.strip().rstrip("/")
    if value and not re.fullmatch(r"https?://[^/\s?#]+(/[^\s?#]*)?", value):
        raise ValueError("expected an http(s) URL without query or fragment")
    return value


def _proxy_hops(raw: str) -> int | None:
    value = raw.strip().lower()
    if value in {"", "auto"}:
        return None
    if not value.isdigit() or not 0 <= int(value) <= 5:
        raise ValueError("expected auto or an integer from 0 to 5")
    return int(value)


def _optional(raw: str) -> str | None:
    # Set but empty reads as unset, as Google's own client libraries read these variables.
    return raw.strip() or None


def _project_id(raw: str) -> str | None:
    value = _optional(raw)
    # Project ids, including domain-scoped ones (`example.com:my-project`).
    if value is not None and not re.fullmatch(r"[a-z0-9][a-z0-9.:-]{0,99}", value):
        raise ValueError("expected a Google Cloud project id (lowercase letters, digits, hyphens)")
    return value


def _route(raw: str) -> str:
    value = raw.strip()
    # Werkzeug reads `<...>` in a rule as a URL variable; Vertex AI's routes are plain paths.
    if not value.startswith("/") or any(ch in value for ch in "<>?# \t"):
        raise ValueError("expected a URL path starting with '/' (no '<', '>', '?', '#' or spaces)")
    return value


def _model_name(raw: str) -> str:
    value = raw.strip()
    if not value:
        raise ValueError("expected a model name")
    return value


# App Engine standard rejects requests over 32 MB (whether read as 10^6 or 2^20 bytes)
# before they reach the app; staying a little under it means our own 413 (JSON, with a
# message) is what clients see.
_DEFAULT_MAX_REQUEST_BYTES = 30 * 1024 * 1024


@dataclass(frozen=True)
class Settings:
    """The server's configuration: defaults, overridden by environment variables.

    Tests build one directly, e.g. `Settings(handlers_dir=path, model_loading="lazy")`;
    production builds it with `Settings.from_env()`.
    """

    # --- server ---
    host: str = _setting("HOST", "0.0.0.0", "Address gunicorn and `python main.py` bind to.")
    port: int = _setting(
        "PORT",
        8080,
        "Port to listen on. App Engine and Cloud Run set it; 8080 otherwise.",
        _int_between(1, 65535),
    )
    workers: int = _setting(
        "GUNICORN_WORKERS",
        2,
        "gunicorn worker processes (each loads every model once).",
        _int_between(1, 64),
    )
    threads: int = _setting(
        "GUNICORN_THREADS",
        8,
        "Threads per gunicorn worker (gthread worker class): concurrent requests per worker, "
        "and so the largest batch one worker can gather.",
        _int_between(1, 256),
    )
    timeout_s: int = _setting(
        "GUNICORN_TIMEOUT",
        60,
        "Seconds a worker may be silent before gunicorn's master restarts it.",
        _int_between(1, 3600),
    )
    graceful_timeout_s: int = _setting(
        "GUNICORN_GRACEFUL_TIMEOUT",
        8,
        "Seconds in-flight requests get to finish after SIGTERM (Cloud Run allows 10).",
        _int_between(1, 3600),
    )
    max_request_bytes: int = _setting(
        "MAX_REQUEST_BYTES",
        _DEFAULT_MAX_REQUEST_BYTES,
        "Largest request body accepted; larger ones get 413 (App Engine's own limit is 32 MB).",
        _int_between(1024, 1024 * 1024 * 1024),
    )
    # --- models ---
    handlers_dir: Path = _setting(
        "HANDLERS_DIR",
        PROJECT_ROOT / "handlers",
        "Directory whose `*.py` modules are the served models (relative to the project root).",
        _path,
    )
    model_loading: str = _setting(
        "MODEL_LOADING",
        "eager",
        "`eager`: run every `setup()` when the app is built (with gunicorn's preload, before "
        "the fork); `lazy`: on first use or at `/_ah/warmup`.",
        _one_of("eager", "lazy"),
    )
    validate_output: bool = _setting(
        "VALIDATE_OUTPUT",
        True,
        "Check each result against the handler's OUTPUT_SCHEMA (a mismatch is a logged 500).",
        _parse_bool,
    )
    # --- HTTP ---
    cors_origins: tuple[str, ...] = _setting(
        "CORS_ORIGINS",
        ("*",),
        "Comma-separated origins allowed to call the API from a browser; `*` for any (never with credentials).",
        _parse_csv,
    )
    # --- logging ---
    log_level: str = _setting("LOG_LEVEL", "INFO", "Lowest level logged.", _log_level)
    log_format: str = _setting(
        "LOG_FORMAT",
        "auto",
        "`json`: one JSON object per line; `text` for humans; `gcp`: google-cloud-logging's structured "
        "handler (trace, source location, labels); `auto`: `gcp` on Google Cloud, `json` elsewhere.",
        _one_of("auto", "gcp", "json", "text"),
    )
    # --- batch prediction, Vertex AI and API docs ---
    predict_max_instances: int = _setting(
        "PREDICT_MAX_INSTANCES",
        1000,
        "Most `instances` one `POST /v1/models/<Model>:predict` may carry; more get 413.",
        _int_between(1, 1_000_000),
    )
    default_model: str | None = _setting(
        "DEFAULT_MODEL",
        None,
        "Model that Vertex AI's predict route (`AIP_PREDICT_ROUTE`) serves; default the only model served.",
        _model_name,
    )
    aip_http_port: int | None = _setting(
        "AIP_HTTP_PORT",
        None,
        "Vertex AI custom container: the port to listen on (overrides `PORT`). Vertex AI sets it.",
        _int_between(1, 65535),
    )
    aip_health_route: str | None = _setting(
        "AIP_HEALTH_ROUTE",
        None,
        "Vertex AI custom container: route answering 200 only when `DEFAULT_MODEL` is ready. Vertex AI sets it.",
        _route,
    )
    aip_predict_route: str | None = _setting(
        "AIP_PREDICT_ROUTE",
        None,
        'Vertex AI custom container: route taking `{"instances": [...]}` for `DEFAULT_MODEL`. Vertex AI sets it.',
        _route,
    )
    # --- asynchronous jobs ---
    jobs_store: str = _setting(
        "JOBS_STORE",
        "auto",
        "Where jobs are kept: `sqlite` (a file in `JOBS_DATA_DIR`), `postgresql` (`DATABASE_URL`), "
        "`firestore`, or `none` (asynchronous requests get 503). `auto`: `postgresql` when `DATABASE_URL` "
        "is set, else `sqlite` except on App Engine/Cloud Run, whose disks vanish with the instance (`none`).",
        _one_of("auto", "sqlite", "postgresql", "firestore", "none"),
    )
    database_url: str = _setting(
        "DATABASE_URL",
        "",
        "PostgreSQL URL of the job store, e.g. `postgresql://user:pass@/db?host=/cloudsql/PROJECT:REGION:INSTANCE`.",
        secret=True,
    )
    jobs_data_dir: Path = _setting(
        "JOBS_DATA_DIR",
        PROJECT_ROOT / "var",
        "Writable, persistent directory of the SQLite job store (`jobs.sqlite`); refused when it is on tmpfs.",
        _path,
    )
    jobs_allow_ephemeral_store: bool = _setting(
        "JOBS_ALLOW_EPHEMERAL_STORE",
        False,
        "Accept a SQLite job store on tmpfs or a serverless instance's disk, where jobs are lost with it (demos only).",
        _parse_bool,
    )
    jobs_dispatcher: str = _setting(
        "JOBS_DISPATCHER",
        "threads",
        "Who runs jobs: `threads` (a pool in every server process that claims jobs from the store) or "
        "`cloud-tasks` (each job is a Cloud Tasks HTTP task delivered to `POST /internal/jobs/<id>/run`).",
        _one_of("threads", "cloud-tasks"),
    )
    jobs_workers: int = _setting(
        "JOBS_WORKERS",
        2,
        "Jobs run at once per server process by the `threads` dispatcher; 0 makes the process submit-only.",
        _int_between(0, 64),
    )
    jobs_poll_interval_s: float = _setting(
        "JOBS_POLL_INTERVAL_S",
        1.0,
        "Seconds an idle worker thread waits before looking for jobs again (submits in the same process wake it).",
        _float_between(0.05, 60),
    )
    jobs_lease_s: float = _setting(
        "JOBS_LEASE_S",
        60.0,
        "Seconds a claim lasts without a heartbeat (sent every third of it); a job whose process died is "
        "re-run after its lease expires.",
        _float_between(1, 3600),
    )
    jobs_max_attempts: int = _setting(
        "JOBS_MAX_ATTEMPTS",
        3,
        "Times a job is started before it fails for good (a start counts when its process dies mid-job).",
        _int_between(1, 100),
    )
    jobs_timeout_s: float = _setting(
        "JOBS_TIMEOUT_S",
        900.0,
        "Seconds a job may run before it fails as timed out (a handler's `TIMEOUT_S` overrides it).",
        _float_between(1, 86400),
    )
    jobs_retention_s: int = _setting(
        "JOBS_RETENTION_S",
        7 * 24 * 3600,
        "Seconds finished jobs and their results are kept before they are purged.",
        _int_between(60, 10 * 365 * 24 * 3600),
    )
    jobs_purge_interval_s: float = _setting(
        "JOBS_PURGE_INTERVAL_S",
        600.0,
        "Seconds between purges of expired jobs (by the `threads` dispatcher, or after Cloud Tasks runs).",
        _float_between(1, 86400),
    )
    jobs_webhook_allow_loopback: bool = _setting(
        "JOBS_WEBHOOK_ALLOW_LOOPBACK",
        False,
        "Allow `http://` webhooks to loopback addresses (local development); other targets must be "
        "`https` to public addresses.",
        _parse_bool,
    )
    jobs_webhook_max_attempts: int = _setting(
        "JOBS_WEBHOOK_MAX_ATTEMPTS",
        6,
        "Deliveries tried per webhook before giving up.",
        _int_between(1, 50),
    )
    jobs_webhook_backoff_s: float = _setting(
        "JOBS_WEBHOOK_BACKOFF_S",
        10.0,
        "Seconds before the first webhook retry; each later retry waits twice as long (at most an hour).",
        _float_between(0.01, 3600),
    )
    jobs_webhook_timeout_s: float = _setting(
        "JOBS_WEBHOOK_TIMEOUT_S",
        10.0,
        "Seconds a webhook target has to connect and answer.",
        _float_between(0.1, 120),
    )
    jobs_firestore_project: str = _setting(
        "JOBS_FIRESTORE_PROJECT",
        "",
        "Google Cloud project of the Firestore job store (default: the environment's project). "
        "`FIRESTORE_EMULATOR_HOST` points the client at an emulator.",
    )
    jobs_firestore_database: str = _setting(
        "JOBS_FIRESTORE_DATABASE", "(default)", "Firestore database id of the job store."
    )
    jobs_firestore_collection: str = _setting(
        "JOBS_FIRESTORE_COLLECTION",
        "jobs",
        "Firestore collection of the jobs (idempotency keys go to `<collection>_keys`).",
        _collection_name,
    )
    jobs_tasks_queue: str = _setting(
        "JOBS_TASKS_QUEUE",
        "",
        "Cloud Tasks queue of the `cloud-tasks` dispatcher: `projects/P/locations/L/queues/Q`.",
        _tasks_queue,
    )
    jobs_tasks_target: str = _setting(
        "JOBS_TASKS_TARGET",
        "app_engine",
        "`app_engine`: App Engine tasks to this service (trusted by `X-AppEngine-QueueName`); `http`: HTTP "
        "tasks to `JOBS_TASKS_URL` with an OIDC token (Cloud Run).",
        _one_of("app_engine", "http"),
    )
    jobs_tasks_url: str = _setting(
        "JOBS_TASKS_URL",
        "",
        "Base URL of this service for `http` tasks, e.g. `https://my-service-abc123-uc.a.run.app`.",
        _base_url,
    )
    jobs_tasks_service_account: str = _setting(
        "JOBS_TASKS_SERVICE_ACCOUNT",
        "",
        "Service account whose OIDC token signs `http` tasks; the run endpoint accepts only its tokens.",
    )
    jobs_tasks_audience: str = _setting(
        "JOBS_TASKS_AUDIENCE",
        "",
        "Audience of the OIDC token of `http` tasks (default: `JOBS_TASKS_URL`).",
    )
    jobs_tasks_oidc_certs_url: str = _setting(
        "JOBS_TASKS_OIDC_CERTS_URL",
        "https://www.googleapis.com/oauth2/v1/certs",
        "Where the public keys that sign Google's OIDC tokens are fetched (tests point it at a local server).",
        _base_url,
    )
    jobs_tasks_emulator_host: str = _setting(
        "JOBS_TASKS_EMULATOR_HOST",
        "",
        "`host:port` of a Cloud Tasks emulator (gcloud-tasks-emulator) to use instead of Google's API.",
    )
    # --- Google Cloud platform ---
    proxy_hops: int | None = _setting(
        "PROXY_HOPS",
        None,
        "Proxies in front of the app whose `X-Forwarded-For`/`-Proto` are trusted (so URLs and "
        "`request.scheme` are https behind Google's front end); unset or `auto`: 1 on Google Cloud, 0 elsewhere.",
        _proxy_hops,
    )
    google_cloud_project: str | None = _setting(
        "GOOGLE_CLOUD_PROJECT",
        None,
        "Project id that log entries' trace links name. App Engine sets it; service.yaml and the Cloud "
        "Functions deploy command set it (Cloud Run does not).",
        _project_id,
    )
    gcloud_project: str | None = _setting(
        "GCLOUD_PROJECT", None, "Older name of `GOOGLE_CLOUD_PROJECT`, read when that is unset.", _project_id
    )
    k_service: str | None = _setting(
        "K_SERVICE", None, "Set by Cloud Run and Cloud Functions: the service name (means: on Google Cloud).", _optional
    )
    gae_env: str | None = _setting(
        "GAE_ENV", None, "Set by App Engine (`standard`; `localdev` under dev_appserver.py).", _optional
    )
    gae_service: str | None = _setting("GAE_SERVICE", None, "Set by App Engine: the service name.", _optional)
    function_target: str | None = _setting(
        "FUNCTION_TARGET", None, "Set by Cloud Functions: the entry point's name (`api`).", _optional
    )
    # --- throughput and observability ---
    batching: bool = _setting(
        "BATCHING",
        True,
        "Gather concurrent requests to a model that has `predict_batch` into one call (per worker process).",
        _parse_bool,
    )
    batch_max_size: int | None = _setting(
        "BATCH_MAX_SIZE",
        None,
        "Largest batch for every model, overriding each handler's `BATCH` (default: the handler's, else 32).",
        _int_between(1, 4096),
    )
    batch_max_latency_ms: float | None = _setting(
        "BATCH_MAX_LATENCY_MS",
        None,
        "Longest a queued request waits for its batch to fill, overriding each handler's `BATCH` "
        "(default: the handler's, else 5).",
        _float_between(0, 10_000),
    )
    batch_queue_limit: int = _setting(
        "BATCH_QUEUE_LIMIT",
        256,
        "Requests that may wait for one model in one worker; more get 503 with `Retry-After`.",
        _int_between(1, 100_000),
    )
    metrics: bool = _setting(
        "METRICS", True, "Record Prometheus metrics and serve them at `GET /metrics`.", _parse_bool
    )
    metrics_dir: Path | None = _setting(
        "PROMETHEUS_MULTIPROC_DIR",
        None,
        "Directory where each gunicorn worker writes its metrics; unset: gunicorn.conf.py makes a private "
        "one per start and removes it at exit. A set one is emptied of metric files at start.",
        _path,
    )
    # --- security ---
    api_keys: tuple[ApiKey, ...] = _setting(
        "API_KEYS",
        (),
        "API keys, `<id>:<secret>[:<Model>|<Model>]`, separated by commas; when set (or "
        "`API_KEYS_SECRET`), model and job routes require one (see Security).",
        parse_key_specs,
        secret=True,
    )
    api_keys_secret: str | None = _setting(
        "API_KEYS_SECRET",
        None,
        "Secret Manager secret holding more API keys in the same format, one per line: "
        "`projects/<p>/secrets/<s>[/versions/<n>]`; read once at start.",
        parse_secret_name,
    )
    rate_limits: str = _setting(
        "RATE_LIMITS",
        "",
        "Per-client limits on model and job routes, e.g. `100/minute;10/second` (client: API key, "
        "else IP); empty: no limit.",
        _rate_limits,
    )
    rate_limit_storage_url: str | None = _setting(
        "RATE_LIMIT_STORAGE_URL",
        None,
        "Where rate-limit counters live: `redis://host:6379/0` (shared by all workers and "
        "instances); unset: in memory, per worker process.",
        _storage_url,
        secret=True,
    )
    rate_limit_key_prefix: str = _setting(
        "RATE_LIMIT_KEY_PREFIX", "model-serving", "Prefix of the rate-limit keys in Redis."
    )
    predict_timeout_s: float = _setting(
        "PREDICT_TIMEOUT_S",
        30.0,
        "Time budget of one model call when its handler sets no TIMEOUT_S; over it the "
        "client gets 504. 0: no budget (the call runs on the request thread).",
        _float_between(0, 3600),
    )
    max_abandoned_calls: int = _setting(
        "MAX_ABANDONED_CALLS",
        2,
        "Timed-out calls of one model that may still be running before that model answers "
        "503 (degraded) until they end.",
        _int_between(1, 64),
    )
    # --- ONNX Runtime (serving/runtime/onnx.py): threads of every session in a process ---
    onnx_intra_op_threads: int = _setting(
        "ONNX_INTRA_OP_THREADS",
        0,
        "Threads one ONNX Runtime operator may use, per worker process; 0: the usable cores divided by "
        "`GUNICORN_WORKERS` (at least 1), so the workers never oversubscribe the cores.",
        _int_between(0, 256),
    )
    onnx_inter_op_threads: int = _setting(
        "ONNX_INTER_OP_THREADS",
        1,
        "Threads running independent operators of an ONNX graph at once; 1 runs them in order "
        "(best for the small graphs served here).",
        _int_between(1, 256),
    )
    onnx_spin_wait: bool = _setting(
        "ONNX_SPIN_WAIT",
        False,
        "Let ONNX Runtime's pool threads spin between operators: a little lower latency for CPU "
        "that sibling workers could use.",
        _parse_bool,
    )
    flask_debug: bool = _setting(
        "FLASK_DEBUG", False, "Flask debug mode for `python main.py`; refused on Google Cloud.", _parse_bool
    )
    # GAE_ENV, K_SERVICE and FUNCTION_TARGET (Google Cloud platform section) mark a
    # Google Cloud runtime, where FLASK_DEBUG is refused (see `google_cloud_runtime`).

    @property
    def google_cloud_runtime(self) -> str | None:
        """The variable that shows this runs on Google Cloud, or None when it does not."""
        # dev_appserver.py sets GAE_ENV=localdev: that is a developer's machine.
        if self.gae_env and self.gae_env != "localdev":
            return "GAE_ENV"
        if self.k_service:
            return "K_SERVICE"
        return "FUNCTION_TARGET" if self.function_target else None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from `environ` (default `os.environ`); unset names keep defaults."""
        source = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for spec in dataclasses.fields(cls):
            env = spec.metadata["env"]
            raw = source.get(env)
            if raw is None:
                continue
            parse: Callable[[str], Any] = spec.metadata["parse"] or str
            try:
                values[spec.name] = parse(raw)
            except ValueError as exc:
                shown = "<redacted>" if spec.metadata["secret"] else repr(raw)
                raise SettingsError(f"{env}={shown} is not valid: {exc}") from None
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        """Reject combinations of values that are each valid alone but not together."""
        if self.flask_debug and self.google_cloud_runtime:
            raise SettingsError(
                f"FLASK_DEBUG is refused on Google Cloud ({self.google_cloud_runtime} is set): debug must not be public"
            )
        if "*" in self.cors_origins and len(self.cors_origins) > 1:
            raise SettingsError(
                f"CORS_ORIGINS={','.join(self.cors_origins)!r} is not valid: `*` cannot be combined with named origins"
            )
        if (self.aip_health_route is None) != (self.aip_predict_route is None):
            given, missing = (
                ("AIP_HEALTH_ROUTE", "AIP_PREDICT_ROUTE")
                if self.aip_predict_route is None
                else ("AIP_PREDICT_ROUTE", "AIP_HEALTH_ROUTE")
            )
            raise SettingsError(f"{given} is set but {missing} is not: Vertex AI sets both, set neither or both")
        if self.vertex_ai and self.aip_health_route == self.aip_predict_route:
            raise SettingsError(
                f"AIP_HEALTH_ROUTE={self.aip_health_route!r} is not valid: it must differ from AIP_PREDICT_ROUTE"
            )

    @property
    def listen_port(self) -> int:
        """The port the server binds: Vertex AI's `AIP_HTTP_PORT` when set, else `PORT`."""
        return self.aip_http_port if self.aip_http_port is not None else self.port

    @property
    def vertex_ai(self) -> bool:
        """True when Vertex AI's custom container routes are configured."""
        return self.aip_health_route is not None and self.aip_predict_route is not None

    def replace(self, **changes: Any) -> Settings:
        """A copy with some values changed (for tests and tools)."""
        return dataclasses.replace(self, **changes)


def settings_table() -> str:
    """The README's configuration table, generated from the fields above."""
    rows = ["| Variable | Default | Meaning |", "| --- | --- | --- |"]
    for spec in dataclasses.fields(Settings):
        default = spec.default
        if isinstance(default, tuple):
            shown = ",".join(default)
        elif isinstance(default, Path):
            shown = str(default.relative_to(PROJECT_ROOT)) if default.is_relative_to(PROJECT_ROOT) else str(default)
        elif isinstance(default, bool):
            shown = str(default).lower()
        elif default is None or default == "":
            shown = "(unset)"
        else:
            shown = str(default)
        rows.append(f"| `{spec.metadata['env']}` | `{shown}` | {spec.metadata['doc']} |")
    return "\n".join(rows)
