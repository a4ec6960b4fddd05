"""Settings of the models: where handlers live, when they load, batching and call time budgets."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from serving.config import parsers
from serving.config.fields import PROJECT_ROOT, setting


@dataclass(frozen=True)
class ModelSettings:
    handlers_dir: Path = setting(
        "HANDLERS_DIR",
        PROJECT_ROOT / "handlers",
        "Directory whose `*.py` modules are the served models (relative to the project root).",
        parsers.path,
    )
    model_loading: str = setting(
        "MODEL_LOADING",
        "eager",
        "`eager`: run every `setup()` when the app is built (with gunicorn's preload, before "
        "the fork); `lazy`: on first use or at `/_ah/warmup`.",
        parsers.one_of("eager", "lazy"),
    )
    validate_output: bool = setting(
        "VALIDATE_OUTPUT",
        True,
        "Check each result against the handler's OUTPUT_SCHEMA (a mismatch is a logged 500).",
        parsers.parse_bool,
    )


@dataclass(frozen=True)
class BatchingSettings:
    batching: bool = setting(
        "BATCHING",
        True,
        "Gather concurrent requests to a model that has `predict_batch` into one call (per worker process).",
        parsers.parse_bool,
    )
    batch_max_size: int | None = setting(
        "BATCH_MAX_SIZE",
        None,
        "Largest batch for every model, overriding each handler's `BATCH` (default: the handler's, else 32).",
        parsers.int_between(1, 4096),
    )
    batch_max_latency_ms: float | None = setting(
        "BATCH_MAX_LATENCY_MS",
        None,
        "Longest a queued request waits for its batch to fill, overriding each handler's `BATCH` "
        "(default: the handler's, else 5).",
        parsers.float_between(0, 10_000),
    )
    batch_queue_limit: int = setting(
        "BATCH_QUEUE_LIMIT",
        256,
        "Requests that may wait for one model in one worker; more get 503 with `Retry-After`.",
        parsers.int_between(1, 100_000),
    )
    bulk_max_in_flight: int = setting(
        "BULK_MAX_IN_FLIGHT",
        2,
        "Requests of more rows than their model's batch (`:predict` instances, BigQuery calls, "
        "tensors, texts) that one worker runs at once; later ones wait, within their time budget. "
        "Their rows are CPU work under one interpreter lock: more at once only cost more CPU a row.",
        parsers.int_between(1, 256),
    )


@dataclass(frozen=True)
class CallLimitSettings:
    predict_timeout_s: float = setting(
        "PREDICT_TIMEOUT_S",
        30.0,
        "Time budget of one model call when its handler sets no TIMEOUT_S; over it the "
        "client gets 504. 0: no budget (the call runs on the request thread).",
        parsers.float_between(0, 3600),
    )
    max_pixels_per_request: int = setting(
        "MAX_PIXELS_PER_REQUEST",
        4 * 4096 * 4096,
        "Decoded image pixels one request may cost, over all its images (413 beyond; "
        "checked from the images' headers before decoding). Default: four 4096x4096 images.",
        parsers.int_between(1, 2**40),
    )
    max_abandoned_calls: int = setting(
        "MAX_ABANDONED_CALLS",
        2,
        "Timed-out calls of one model that may still be running before that model answers "
        "503 (degraded) until they end.",
        parsers.int_between(1, 64),
    )
