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
(tests/test_pipeline.py checks both the order and that).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response

from serving.config.api_keys import KeyRing
from serving.http.batch import tf_serving_marker
from serving.http.cors import cors_extension, preflight_no_content
from serving.http.inference_v2 import protocol_error_key
from serving.http.lifecycle import remote_model_loader
from serving.http.model_version import version_header
from serving.http.openai import openai_error_shape
from serving.http.predict import announce_prediction, withdraw_prediction
from serving.http.state import ServingState
from serving.observability.logs import request_logger, start_request
from serving.observability.metrics import request_observer
from serving.observability.prediction_log import prediction_logger
from serving.security.access import current_key_id, enforce_key, key_identifier
from serving.security.hardening import security_headers
from serving.security.ratelimits import create_limiter, retry_after

EXTENSION_KEY = "serving.http.pipeline"


@dataclass(frozen=True)
class Step:
    """One named stage of every request; each hook is optional (a step may be switched off)."""

    name: str
    before: Callable[[], Any] | None = None
    after: Callable[[Response], Response] | None = None
    teardown: Callable[[BaseException | None], None] | None = None
    # A Flask extension's `init_app`, which registers the extension's own hooks here.
    extension: Callable[[Flask], None] | None = None


def request_steps(state: ServingState, ring: KeyRing) -> list[Step]:
    """Every request's steps, outermost first."""
    settings = state.settings
    limiter = create_limiter(
        limits=settings.rate_limits,
        storage_url=settings.rate_limit_storage_url,
        key_prefix=settings.rate_limit_key_prefix,
    )
    batching = state.inference.batchers is not None
    return [
        # First in, last out: every response carries the request id, every request is
        # logged once with its final status, and the log context has the id from the start.
        Step("request-log", before=start_request, after=request_logger(key_id=current_key_id)),
        # Flask's automatic answer to a CORS preflight (an empty 200) goes out as a 204.
        # Here, inside the request log (which logs the 204) and outside the metrics
        # (which count the view's 200).
        Step("preflight-204", after=preflight_no_content),
        # Eager loading: the models that wait for Cloud Storage start loading in this
        # process's background (once; a gunicorn worker has started them already).
        Step("remote-models", before=remote_model_loader(state) if settings.model_loading == "eager" else None),
        # Counts every response, refusals included, with the model the request named.
        Step("metrics", after=request_observer(state.metrics)),
        # A sampled prediction's entry (PREDICTION_LOG), with the version the next step found.
        Step(
            "prediction-log",
            after=prediction_logger(state.prediction_log) if state.prediction_log is not None else None,
        ),
        # `X-Model-Version` on responses about a loaded model, and the version in the log line.
        Step("model-version", after=version_header(state.registry)),
        # Identify the API key, count the request against its client's rate limit (so
        # failed key guesses are limited too), then refuse it if it has no valid key.
        Step("identify-key", before=key_identifier(ring)),
        Step(
            "rate-limit",
            extension=limiter.init_app if limiter is not None else None,
            after=retry_after(limiter) if limiter is not None else None,
        ),
        Step("enforce-key", before=enforce_key),
        # Headers for every response that passed the steps above, refusals included.
        Step("security-headers", after=security_headers),
        Step("cors", extension=cors_extension(settings)),
        # Admitted requests only: a `POST /v1/<Name>` tells its model's batcher it is
        # coming while its body is still read; withdrawn at teardown if it never got there.
        Step(
            "announce-prediction",
            before=announce_prediction if batching else None,
            teardown=withdraw_prediction if batching else None,
        ),
        # Errors of TF Serving's routes carry `error` too; those refused above (401, 429) do not.
        Step("tf-serving-errors", before=tf_serving_marker(settings.aip_predict_route)),
        # The error shapes other protocols' clients parse, for every error on their routes
        # (refusals above included): OpenAI's on /v1/embeddings, `error` on /v2.
        Step("openai-errors", after=openai_error_shape),
        Step("v2-errors", after=protocol_error_key),
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
