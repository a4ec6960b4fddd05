"""The request pipeline: the steps every request passes through, in one ordered list.

Read `request_steps` top to bottom. As in Starlette's middleware stack, the list goes from
the outside in. Before the view, each step's `before` runs in list order; after it, each
step's `after` runs in reverse order, so the first step sees the request first and its
response last; `teardown`s run in reverse order too, at the very end, even after a
failure. A `before` that raises (a 401, a 429) skips the later `before`s and the view;
the error's JSON response (serving/http/error_handlers.py) still passes every `after`.

Two steps are Flask extensions (Flask-Limiter, Flask-CORS) that register their own hooks
in `init_app`: the pipeline calls it at the step's place, so their hooks run there.
`install_pipeline` uses nothing but Flask's public hooks (`before_request`,
`after_request`, `teardown_request`), and no other code registers app-wide request hooks
(tests/http/test_pipeline.py checks both the order and that).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response

from serving.config.api_keys import KeyRing
from serving.http.cors import any_origin_headers, cors_extension, preflight_no_content, vary_on_origin
from serving.http.lifecycle import remote_model_loader
from serving.http.model_version import version_header
from serving.http.state import ServingState
from serving.observability.logs import request_logger, start_request
from serving.observability.metrics import request_observer
from serving.observability.prediction_log import prediction_logger
from serving.platform.detect import request_log_sample_rate
from serving.security.access import current_key_id, enforce_key, key_identifier
from serving.security.hardening import security_headers
from serving.security.ratelimits import create_limiter, retry_after

EXTENSION_KEY = "serving.http.pipeline"


@dataclass(frozen=True)
class Step:
    """One named stage of every request; each hook is optional (a step may be switched off)."""

    name: str
    # What the step does and why it stands where it does: the table in
    # docs/request-pipeline.md is generated from it (`pipeline_table`).
    does: str
    before: Callable[[], Any] | None = None
    after: Callable[[Response], Response] | None = None
    teardown: Callable[[BaseException | None], None] | None = None
    # A Flask extension's `init_app`, which registers the extension's own hooks here.
    extension: Callable[[Flask], None] | None = None


def request_steps(state: ServingState, ring: KeyRing, *, exposed_headers: Iterable[str] = ()) -> list[Step]:
    """Every request's steps, outermost first; `exposed_headers` are the protocols' own, for CORS."""
    settings = state.settings
    limiter = create_limiter(
        limits=settings.rate_limits,
        storage_url=settings.rate_limit_storage_url,
        key_prefix=settings.rate_limit_key_prefix,
    )
    return [
        Step(
            "request-log",
            "First in, last out: sets the request id, trace and start time, so the log context has them "
            "from the start; adds `X-Request-Id` and logs the request once, with its final status.",
            before=start_request,
            after=request_logger(key_id=current_key_id, sample_rate=request_log_sample_rate(settings)),
        ),
        Step(
            "preflight-204",
            "Flask's automatic answer to a CORS preflight (an empty 200) goes out as a 204: inside the request "
            "log, which logs the 204, and outside the metrics, which count the view's 200.",
            after=preflight_no_content,
        ),
        Step(
            "remote-models",
            "With `MODEL_LOADING=eager`, the models whose files come from Cloud Storage start loading in this "
            "process's background, once, so the server answers meanwhile (a gunicorn worker has started them "
            "already, in `post_worker_init`); with `lazy`, or no such model, no hook.",
            before=remote_model_loader(state),
        ),
        Step(
            "metrics",
            "Counts every response, refusals included, with the model the request named (`METRICS`).",
            after=request_observer(state.metrics),
        ),
        Step(
            "prediction-log",
            "A sampled prediction's entry (`PREDICTION_LOG`), with the version the next step found.",
            after=prediction_logger(state.prediction_log) if state.prediction_log is not None else None,
        ),
        Step(
            "model-version",
            "`X-Model-Version` on responses about a loaded model, and the version in the log line.",
            after=version_header(state.registry),
        ),
        Step(
            "identify-key",
            "Which API key was presented: counted against its client's rate limit next, so failed key "
            "guesses are limited too.",
            # No keys configured: nothing to identify, no hook (a request pays nothing).
            before=key_identifier(ring) if ring.enabled else None,
        ),
        Step(
            "rate-limit",
            "Flask-Limiter's check and its headers (`RATE_LIMITS`); `Retry-After` on a 429.",
            extension=limiter.init_app if limiter is not None else None,
            after=retry_after(limiter) if limiter is not None else None,
        ),
        Step(
            "enforce-key",
            "401 without a valid key on a protected route.",
            before=enforce_key if ring.enabled else None,
        ),
        Step(
            "security-headers",
            "`nosniff`, CSP, HSTS... on every response that passed the steps above, refusals included.",
            after=security_headers,
        ),
        Step(
            "cors",
            "Flask-CORS's headers (`CORS_ORIGINS`), exposing ours and the protocols' own. With `*`, an "
            "answer that is no preflight gets the same two headers whoever asks: computed once and added "
            "just before Flask-CORS's hook, which then leaves the answer alone. `Vary: Origin` when the "
            "answer depends on the caller's origin (named origins).",
            extension=cors_extension(settings, exposed_headers),
            # Registered after Flask-CORS's hook, so it runs just before it.
            after=any_origin_headers(settings, exposed_headers) or vary_on_origin(settings),
        ),
    ]


def install_pipeline(app: Flask, steps: Sequence[Step]) -> None:
    """Register `steps`' hooks on `app`, step by step in list order."""
    for step in steps:
        if step.extension is not None:
            step.extension(app)
        if step.before is not None:
            app.before_request(step.before)
        if step.after is not None:
            app.after_request(step.after)
        if step.teardown is not None:
            app.teardown_request(step.teardown)
    app.extensions[EXTENSION_KEY] = tuple(steps)


def installed_steps(app: Flask) -> tuple[Step, ...]:
    """The steps `install_pipeline` installed on `app`, in order."""
    steps: tuple[Step, ...] = app.extensions[EXTENSION_KEY]
    return steps


def pipeline_table(steps: Sequence[Step]) -> str:
    """The Markdown table of `steps` in docs/request-pipeline.md: each step, what it does, its hooks.

    `bin/pipeline-table` writes it into the page; tests/http/test_pipeline.py fails while it is stale.
    """
    rows = [
        "| step | what it does | before | after | teardown | extension (registers its own hooks) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for step in steps:
        hooks = (step.before, step.after, step.teardown, step.extension)
        cells = [f"`{step.name}`", step.does, *(_hook_name(hook) for hook in hooks)]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _hook_name(hook: Callable[..., Any] | None) -> str:
    """`function`, or `factory()` for a hook a factory made, as a reader would search for it."""
    if hook is None:
        return ""
    qualname = str(getattr(hook, "__qualname__", type(hook).__name__))
    factory, made, _ = qualname.partition(".<locals>")
    return f"`{factory}()`" if made else f"`{qualname}`"
