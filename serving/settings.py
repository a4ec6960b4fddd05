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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class SettingsError(ValueError):
    """A setting has a value the server cannot use; the message names the variable."""


def _setting(env: str, default: Any, doc: str, parse: Callable[[str], Any] | None = None) -> Any:
    return field(default=default, metadata={"env": env, "doc": doc, "parse": parse})


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
        32,
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
        "json",
        "`json`: one JSON object per line (what Cloud Logging reads); `text` for humans.",
        _one_of("json", "text"),
    )
    # --- asynchronous jobs ---
    # --- Google Cloud platform ---
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
                raise SettingsError(f"{env}={raw!r} is not valid: {exc}") from None
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        """Reject combinations of values that are each valid alone but not together."""
        if "*" in self.cors_origins and len(self.cors_origins) > 1:
            raise SettingsError(
                f"CORS_ORIGINS={','.join(self.cors_origins)!r} is not valid: `*` cannot be combined with named origins"
            )

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
        elif default is None:
            shown = "(unset)"
        else:
            shown = str(default)
        rows.append(f"| `{spec.metadata['env']}` | `{shown}` | {spec.metadata['doc']} |")
    return "\n".join(rows)
