"""Answer now or schedule a job: one function decides, from the request and the handler's ASYNC."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask

from serving.errors import BadRequest
from serving.protocols.native.dispatch import JobRequest, job_request
from serving.runtime.handlers import discover_handlers
from serving.runtime.registry import ModelRuntime, Registry
from tests.conftest import FIXTURE_HANDLERS

REGISTRY = Registry(discover_handlers(FIXTURE_HANDLERS / "jobs"))
# ASYNC unset ("allowed"), "always" and "never".
MODELS = {"allowed": "Echo", "always": "BackgroundOnly", "never": "SyncOnly"}
PREFER = {"Prefer": "respond-async"}


def _runtime(mode: str) -> ModelRuntime:
    runtime = REGISTRY.get(MODELS[mode])
    assert runtime is not None
    assert runtime.spec.async_mode == mode
    return runtime


def _request(
    mode: str, *, query: str = "", headers: dict[str, str] | list[tuple[str, str]] | None = None, jobs: bool = True
) -> JobRequest | None:
    with Flask(__name__).test_request_context(f"/v1/Model{query}", method="POST", headers=headers or {}):
        return job_request(_runtime(mode), jobs_enabled=jobs)


def _decide(mode: str, **request_: Any) -> bool:
    return _request(mode, **request_) is not None


@pytest.mark.parametrize(
    ("mode", "request_", "jobs", "expected"),
    [
        ("allowed", {}, True, False),
        ("allowed", {"query": "?async=true"}, True, True),
        ("allowed", {"query": "?async=0"}, True, False),
        ("allowed", {"headers": PREFER}, True, True),
        ("allowed", {"headers": {"Prefer": "wait=5, respond-async; x=1"}}, True, True),
        ("allowed", {"headers": [("Prefer", "wait=5"), ("Prefer", "Respond-Async")]}, True, True),
        ("allowed", {"headers": {"Prefer": "respond-asynchronously"}}, True, False),
        ("allowed", {"query": "?%61sync=true"}, True, True),
        ("allowed", {"query": "?other=1"}, True, False),
        ("allowed", {"headers": PREFER}, False, False),  # a preference the server cannot honour
        ("allowed", {"headers": PREFER, "query": "?async=false"}, True, False),
        ("always", {}, True, True),
        ("always", {}, False, True),  # submit() then answers 503 jobs_unavailable
        ("never", {"headers": PREFER}, True, False),
        ("never", {"query": "?async=no"}, True, False),
    ],
    ids=[
        "plain",
        "query",
        "query-false",
        "prefer",
        "prefer-in-a-list",
        "prefer-twice",
        "prefer-another",
        "query-escaped",
        "query-other",
        "prefer-without-store",
        "query-beats-prefer",
        "always",
        "always-without-store",
        "never-prefer",
        "never-query-false",
    ],
)
def test_the_decision(mode: str, request_: dict[str, Any], jobs: bool, expected: bool) -> None:
    assert _decide(mode, jobs=jobs, **request_) is expected


@pytest.mark.parametrize(
    ("mode", "request_", "message"),
    [
        ("always", {"query": "?async=false"}, "runs only asynchronously"),
        ("never", {"query": "?async=true"}, "does not run asynchronously"),
        ("allowed", {"query": "?async=maybe"}, "async must be true or false"),
        ("allowed", {"headers": {"Idempotency-Key": "spaces are not visible"}}, "Idempotency-Key must be"),
        ("always", {"headers": {"Idempotency-Key": "x" * 256}}, "Idempotency-Key must be"),
    ],
    ids=["always-refuses-false", "never-refuses-true", "bad-query", "bad-key", "long-key"],
)
def test_contradictions_and_malformed_options_are_400s(mode: str, request_: dict[str, Any], message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        _decide(mode, **request_)


def test_a_model_that_never_runs_async_ignores_the_idempotency_key() -> None:
    assert _decide("never", headers={"Idempotency-Key": "not valid here"}) is False


@pytest.mark.parametrize(
    ("mode", "request_", "expected"),
    [
        (
            "allowed",
            {"query": "?async=true", "headers": {"Idempotency-Key": "order-42"}},
            JobRequest("order-42", False),
        ),
        ("allowed", {"headers": PREFER}, JobRequest(None, True)),
        ("always", {"headers": {**PREFER, "Idempotency-Key": "k"}}, JobRequest("k", True)),
    ],
    ids=["query-with-key", "prefer", "always-prefer-with-key"],
)
def test_a_job_request_carries_the_options_the_jobs_package_needs(
    mode: str, request_: dict[str, Any], expected: JobRequest
) -> None:
    assert _request(mode, **request_) == expected
