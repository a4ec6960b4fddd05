"""The request pipeline: one ordered list of named steps, and Flask runs exactly that order."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask

from serving.config.api_keys import parse_key_specs
from serving.config.settings import PROJECT_ROOT
from serving.http.pipeline import installed_steps, pipeline_table
from tests.conftest import FIXTURE_HANDLERS

STEPS = [
    "request-log",
    "preflight-204",
    "remote-models",
    "metrics",
    "prediction-log",
    "model-version",
    "identify-key",
    "rate-limit",
    "enforce-key",
    "security-headers",
    "cors",
]
KEY = "pipeline-secret-0123456789abcdef"


@pytest.fixture
def full_app(make_app: Callable[..., Flask]) -> Flask:
    """Every step switched on: metrics, prediction log, rate limits, API keys, batching."""
    return make_app(
        handlers_dir=FIXTURE_HANDLERS / "ok",
        metrics=True,
        prediction_log=True,
        rate_limits="1000/minute",
        batching=True,
        api_keys=parse_key_specs(f"ops:{KEY}"),
    )


def _name(hook: Any) -> str:
    # Flask-Limiter registers one of its hooks as a functools.partial.
    return str(getattr(hook, "func", hook).__qualname__)


@pytest.mark.parametrize(
    "overrides",
    [{}, {"metrics": False, "rate_limits": "", "batching": False}],
    ids=["defaults", "optional-steps-off"],
)
def test_the_steps_in_order(make_app: Callable[..., Flask], overrides: dict[str, Any]) -> None:
    app = make_app(handlers_dir=FIXTURE_HANDLERS / "ok", **overrides)

    assert [step.name for step in installed_steps(app)] == STEPS


def test_flask_runs_the_hooks_of_the_steps_in_list_order_and_no_others(full_app: Flask) -> None:
    # Only app-wide hooks: no blueprint adds request hooks of its own.
    assert set(full_app.before_request_funcs) == {None}
    assert set(full_app.after_request_funcs) == {None}
    assert set(full_app.teardown_request_funcs) == {None}

    before = [_name(hook) for hook in full_app.before_request_funcs[None]]
    # Flask runs after-request and teardown hooks last-registered first.
    after = [_name(hook) for hook in reversed(full_app.after_request_funcs[None])]
    teardown = [_name(hook) for hook in reversed(full_app.teardown_request_funcs[None])]

    assert before == [
        "start_request",  # request-log
        "key_identifier.<locals>._identify",  # identify-key
        "Limiter._check_request_limit",  # rate-limit (Flask-Limiter's own hook)
        "enforce_key",  # enforce-key
    ]
    assert after == [
        "any_origin_headers.<locals>._any_origin",  # cors (with `*`, what Flask-CORS would add)
        "make_after_request_function.<locals>.cors_after_request",  # cors (Flask-CORS's own hook)
        "security_headers",  # security-headers
        "retry_after.<locals>._retry_after",  # rate-limit
        "Limiter.__inject_headers",  # rate-limit (Flask-Limiter's own hook)
        "version_header.<locals>._version",  # model-version
        "prediction_logger.<locals>._log_prediction",  # prediction-log
        "request_observer.<locals>._observe",  # metrics
        "preflight_no_content",  # preflight-204
        "request_logger.<locals>._finish",  # request-log
    ]
    assert teardown == ["Limiter.__release_context"]


def test_steps_that_are_off_install_no_hook(make_app: Callable[..., Flask]) -> None:
    # No model from Cloud Storage, no keys, no limits, no metrics, no prediction log: those steps cost nothing.
    app = make_app(handlers_dir=FIXTURE_HANDLERS / "ok", metrics=False, rate_limits="", prediction_log=False)
    off = {"remote-models", "metrics", "prediction-log", "identify-key", "rate-limit", "enforce-key"}

    for step in installed_steps(app):
        hooks = (step.before, step.after, step.teardown, step.extension)
        assert (all(hook is None for hook in hooks)) == (step.name in off), step.name
    assert [_name(hook) for hook in app.before_request_funcs[None]] == ["start_request"]


def test_a_refusal_still_passes_every_after_step(full_app: Flask, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="serving.request")

    response = full_app.test_client().post("/v1/Echo", json={"text": "hi"}, headers={"Origin": "https://a.example"})

    assert response.status_code == 401  # enforce-key
    body = response.get_json()
    assert body["request_id"] == response.headers["X-Request-Id"]  # request-log
    assert response.headers["Content-Security-Policy"]  # security-headers
    assert response.headers["Access-Control-Allow-Origin"] == "*"  # cors
    assert "error" not in body  # the native protocol's shape
    (line,) = [r for r in caplog.records if r.name == "serving.request"]
    assert line.__dict__["status"] == 401
    metrics = full_app.test_client().get("/metrics", headers={"X-API-Key": KEY}).get_data(as_text=True)
    assert 'route="/v1/<name>",status="401"' in metrics  # metrics


def test_tf_serving_routes_admitted_by_the_steps_answer_errors_with_error(full_app: Flask) -> None:
    response = full_app.test_client().post(
        "/v1/models/NoSuchModel:predict", json={"instances": []}, headers={"X-API-Key": KEY}
    )

    assert response.status_code == 404
    assert response.get_json()["error"] == response.get_json()["message"]


def test_a_preflight_is_logged_as_the_204_it_answers(full_app: Flask, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="serving.request")

    response = full_app.test_client().options(
        "/v1/Echo", headers={"Origin": "https://a.example", "Access-Control-Request-Method": "POST"}
    )

    assert response.status_code == 204
    assert "Content-Type" not in response.headers
    (line,) = [r for r in caplog.records if r.name == "serving.request"]
    assert line.__dict__["status"] == 204


def test_docs_step_table_is_generated_from_the_steps(full_app: Flask) -> None:
    page = (PROJECT_ROOT / "docs" / "request-pipeline.md").read_text()
    table = pipeline_table(installed_steps(full_app))

    assert table in page, "docs/request-pipeline.md's step table is stale: run `make pipeline-table`"
    assert [line.split("`")[1] for line in table.splitlines()[2:]] == STEPS


@pytest.mark.e2e
def test_pipeline_table_command_writes_what_the_test_checks(full_app: Flask, tmp_path: Any) -> None:
    page = tmp_path / "request-pipeline.md"
    before, after = "# Pipeline\n\n<!-- pipeline-table: generated -->\n", "\n<!-- /pipeline-table -->\n\nOutro.\n"
    page.write_text(before + "\n| stale |\n" + after)

    result = subprocess.run(
        [sys.executable, "bin/pipeline-table", "--page", str(page)], cwd=PROJECT_ROOT, capture_output=True, text=True
    )

    assert result.returncode == 0, result.stderr
    assert page.read_text() == before + "\n" + pipeline_table(installed_steps(full_app)) + "\n" + after
