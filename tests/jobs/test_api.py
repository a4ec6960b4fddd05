"""The job API through Flask's test client: submit, poll, cancel, idempotency, errors."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from serving.jobs.service import get_jobs
from tests.conftest import FIXTURE_HANDLERS
from tests.jobs.conftest import wait_for
from tests.servers import free_port

PREFER = {"Prefer": "respond-async"}


def job_count(app: Flask) -> int:
    service = get_jobs(app)
    assert service is not None
    path = service.settings.jobs_data_dir / "jobs.sqlite"
    if not path.exists():
        return 0
    # sqlite3's own `with` only commits; closing() closes (3.13 warns about an unclosed one).
    with contextlib.closing(sqlite3.connect(path)) as conn:
        try:
            return int(conn.execute("SELECT count(*) FROM jobs").fetchone()[0])
        except sqlite3.OperationalError:  # no table yet: nothing was ever stored
            return 0


def finished(client: FlaskClient, location: str, timeout: float = 20) -> dict[str, Any]:
    """The job document once the job reached a terminal state."""

    def terminal() -> dict[str, Any] | None:
        doc: dict[str, Any] = client.get(location).get_json()
        return doc if doc["status"] in ("succeeded", "failed", "canceled") else None

    result: dict[str, Any] = wait_for(terminal, timeout)
    return result


@pytest.fixture
def app(make_jobs_app: Callable[..., Flask]) -> Flask:
    return make_jobs_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def worker_client(make_jobs_app: Callable[..., Flask]) -> FlaskClient:
    """A client of an app whose job pool runs (one worker thread)."""
    return make_jobs_app(jobs_workers=1).test_client()


def test_prefer_respond_async_answers_202_task_scheduled(client: FlaskClient) -> None:
    response = client.post("/v1/Echo", json={"text": "hi"}, headers=PREFER)

    assert response.status_code == 202
    body = response.get_json()
    assert body == {"job_id": body["job_id"], "status": "queued", "message": "Task Scheduled"}
    assert len(body["job_id"]) == 32
    assert response.headers["Location"] == f"/v1/jobs/{body['job_id']}"
    assert response.headers["Preference-Applied"] == "respond-async"


def test_a_queued_job_reads_back_with_the_documented_fields(client: FlaskClient) -> None:
    location = client.post("/v1/Echo?async=true", json={"text": "hi"}).headers["Location"]

    response = client.get(location)

    doc = response.get_json()
    assert response.status_code == 200
    assert doc["status"] == "queued"
    assert doc["model"] == "Echo"
    assert doc["attempts"] == 0
    assert doc["created_at"].endswith("Z")
    assert "result" not in doc
    assert "started_at" not in doc
    assert response.headers["Retry-After"] == "1"


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        ("/v1/Echo", {}, 200),
        ("/v1/Echo?async=true", {}, 202),
        ("/v1/Echo?async=1", {}, 202),
        ("/v1/Echo?async=false", PREFER, 200),
        ("/v1/Echo", {"Prefer": "return=minimal, RESPOND-ASYNC; x=1"}, 202),
        ("/v1/Echo", {"Prefer": "respond-asyncish"}, 200),
        ("/v1/Echo?async=maybe", {}, 400),
        ("/v1/BackgroundOnly", {}, 202),
        ("/v1/BackgroundOnly?async=false", {}, 400),
        ("/v1/SyncOnly", PREFER, 200),
        ("/v1/SyncOnly?async=true", {}, 400),
    ],
    ids=[
        "plain-is-sync",
        "query-async",
        "query-async-1",
        "query-false-wins-over-prefer",
        "prefer-in-a-list",
        "prefer-other-token",
        "query-bad-value",
        "always-async-plain-post",
        "always-async-refuses-sync",
        "never-async-ignores-prefer",
        "never-async-refuses-query",
    ],
)
def test_when_a_request_becomes_a_job(client: FlaskClient, path: str, headers: dict[str, str], status: int) -> None:
    body = {"n": 2} if "BackgroundOnly" in path else {"text": "hi"}

    response = client.post(path, json=body, headers=headers)

    assert response.status_code == status, response.get_json()
    if status == 400:
        assert response.get_json()["code"] == "bad_request"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (None, "No JSON object"),
        ({}, "'text' is a required property"),
        ({"text": "x" * 101}, "is too long"),
    ],
    ids=["no-json", "missing-field", "too-long"],
)
def test_bad_input_never_becomes_a_job(app: Flask, client: FlaskClient, body: Any, message: str) -> None:
    response = client.post("/v1/Echo", json=body, headers=PREFER) if body is not None else client.post("/v1/Echo")

    assert response.status_code == 400
    assert message in response.get_json()["message"]
    assert job_count(app) == 0


def test_idempotency_key_returns_the_same_job(app: Flask, client: FlaskClient) -> None:
    headers = {**PREFER, "Idempotency-Key": "upload-7f3a"}

    first = client.post("/v1/Echo", json={"text": "hi"}, headers=headers)
    again = client.post("/v1/Echo", json={"text": "hi"}, headers=headers)
    different = client.post("/v1/Echo", json={"text": "other"}, headers=headers)

    assert first.status_code == 202
    assert again.status_code == 202
    assert again.get_json()["job_id"] == first.get_json()["job_id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert different.status_code == 422
    assert different.get_json()["code"] == "idempotency_key_reused"
    assert different.get_json()["job_id"] == first.get_json()["job_id"]
    assert job_count(app) == 1


@pytest.mark.parametrize("key", ["", "x" * 256, "tab\there", "ünï"], ids=["empty", "too-long", "control", "non-ascii"])
def test_malformed_idempotency_keys_are_refused(client: FlaskClient, key: str) -> None:
    response = client.post(
        "/v1/Echo", json={"text": "hi"}, headers={**PREFER, "Idempotency-Key": key.encode().decode("latin-1")}
    )

    assert response.status_code == 400
    assert "Idempotency-Key" in response.get_json()["message"]


@pytest.mark.parametrize(
    "url",
    [
        "ftp://hooks.example/x",
        "http://hooks.example/x",
        "https://10.0.0.7/x",
        "https://169.254.169.254/computeMetadata/v1/",
        "https://[::1]/x",
        "https://user:secret@hooks.example/x",
        "https:///no-host",
        "https://localhost/x",
        "https://hooks.example:99999/x",
    ],
    ids=["ftp", "plain-http", "private", "metadata", "loopback-v6", "credentials", "no-host", "localhost", "bad-port"],
)
def test_unsafe_webhooks_are_refused_at_submit(app: Flask, client: FlaskClient, url: str) -> None:
    response = client.post("/v1/Echo", json={"text": "hi"}, headers={**PREFER, "Webhook-Url": url})

    assert response.status_code == 400
    assert response.get_json()["message"].startswith("Webhook refused")
    assert job_count(app) == 0


def test_a_public_https_webhook_is_accepted_and_shown(client: FlaskClient) -> None:
    response = client.post("/v1/Echo?async=true&webhook=https://hooks.example/done", json={"text": "hi"})

    doc = client.get(response.headers["Location"]).get_json()
    assert response.status_code == 202
    assert doc["webhook"] == {"state": "waiting"}


class _Untouchable:
    def close(self) -> None:
        """The fixture closes every store after the test."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the store was asked ({name}) for a malformed id")


@pytest.mark.parametrize(
    "job_id",
    ["abc", "0" * 31, "0" * 33, "G" * 32, "' OR 1=1 --", "A" * 32, "x" * 500],
    ids=["short", "31", "33", "not-hex", "injection", "uppercase", "huge"],
)
@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_malformed_job_ids_are_404_without_a_lookup(app: Flask, client: FlaskClient, job_id: str, method: str) -> None:
    service = get_jobs(app)
    assert service is not None
    service.store = _Untouchable()  # type: ignore[assignment]

    response = client.open(f"/v1/jobs/{job_id}", method=method)

    assert response.status_code == 404
    assert response.get_json()["code"] == "job_not_found"


def test_unknown_job_is_404(client: FlaskClient) -> None:
    assert client.get("/v1/jobs/" + "ab" * 16).status_code == 404
    assert client.delete("/v1/jobs/" + "ab" * 16).status_code == 404


def test_cancel_a_queued_job_then_cancelling_again_is_409(client: FlaskClient) -> None:
    location = client.post("/v1/Echo", json={"text": "hi"}, headers=PREFER).headers["Location"]

    canceled = client.delete(location)
    again = client.delete(location)

    assert canceled.status_code == 200
    assert canceled.get_json()["status"] == "canceled"
    assert canceled.get_json()["error"]["code"] == "canceled"
    assert "finished_at" in canceled.get_json()
    assert again.status_code == 409
    assert again.get_json()["code"] == "job_finished"
    assert again.get_json()["status"] == "canceled"
    assert client.get(location).get_json()["status"] == "canceled"


def test_jobs_turned_off_answer_503_unless_async_was_only_preferred(make_jobs_app: Callable[..., Flask]) -> None:
    client = make_jobs_app(jobs_store="none").test_client()

    submitted = client.post("/v1/Echo?async=true", json={"text": "hi"})
    always = client.post("/v1/BackgroundOnly", json={"n": 1})
    preferred = client.post("/v1/Echo", json={"text": "hi"}, headers=PREFER)
    polled = client.get("/v1/jobs/" + "ab" * 16)

    assert submitted.status_code == 503
    assert submitted.get_json()["code"] == "jobs_unavailable"
    assert "JOBS_STORE=none" in submitted.get_json()["message"]
    assert always.status_code == 503
    # Prefer is only a preference (RFC 7240): answered synchronously, not refused.
    assert preferred.status_code == 200
    assert preferred.get_json() == {"result": {"text": "hi"}}
    assert "Preference-Applied" not in preferred.headers
    assert polled.status_code == 503


def test_an_unreachable_database_is_503_not_500(make_jobs_app: Callable[..., Flask]) -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/test?connect_timeout=2"
    client = make_jobs_app(jobs_store="postgresql", database_url=url).test_client()

    submitted = client.post("/v1/Echo", json={"text": "hi"}, headers=PREFER)
    polled = client.get("/v1/jobs/" + "ab" * 16)

    assert submitted.status_code == 503
    assert submitted.headers["Retry-After"] == "5"
    assert "unavailable" in submitted.get_json()["message"]
    assert polled.status_code == 503


def test_a_model_that_failed_to_load_refuses_jobs(make_jobs_app: Callable[..., Flask]) -> None:
    client = make_jobs_app(handlers_dir=FIXTURE_HANDLERS / "ok").test_client()

    response = client.post("/v1/FailingSetup", json={}, headers=PREFER)

    assert response.status_code == 503
    assert response.get_json()["code"] == "model_unavailable"


@pytest.mark.parametrize(
    ("path", "body", "status", "expected"),
    [
        ("/v1/Echo", {"text": "hi"}, "succeeded", {"result": {"text": "hi"}}),
        ("/v1/BackgroundOnly", {"n": 21}, "succeeded", {"result": 42}),
        (
            "/v1/Failing",
            {},
            "failed",
            {
                "error": {
                    "code": "internal",
                    "message": "The model failed on this input; quote the job id when reporting it",
                }
            },
        ),
        ("/v1/Picky", {}, "failed", {"error": {"code": "invalid_input", "message": "the picture is not a PNG"}}),
        (
            "/v1/Sleepy",
            {"seconds": 3},
            "failed",
            {"error": {"code": "timeout", "message": "The job did not finish within 0.5 s"}},
        ),
    ],
    ids=["echo", "always-async", "handler-exception", "invalid-input", "timeout"],
)
def test_jobs_run_to_a_terminal_state(
    worker_client: FlaskClient, path: str, body: Any, status: str, expected: dict[str, Any]
) -> None:
    location = worker_client.post(path, json=body, headers=PREFER).headers["Location"]

    doc = finished(worker_client, location)

    assert doc["status"] == status
    assert {key: doc.get(key) for key in expected} == expected
    assert doc["attempts"] == 1
    assert doc["started_at"] <= doc["finished_at"]
    assert doc["created_at"] <= doc["started_at"]
    if status == "failed":
        assert "secret" not in json.dumps(doc)


def test_cancelling_a_running_job_discards_its_result(worker_client: FlaskClient, tmp_path: Path) -> None:
    log, gate = tmp_path / "runs.log", tmp_path / "gate"
    body = {"tag": "t1", "log": str(log), "gate": str(gate)}
    location = worker_client.post("/v1/Gated", json=body, headers=PREFER).headers["Location"]
    wait_for(lambda: log.exists() and "start" in log.read_text())

    canceled = worker_client.delete(location)
    gate.touch()
    wait_for(lambda: "end" in log.read_text())
    time.sleep(0.2)  # the runner records (and discards) the outcome right after the end

    assert canceled.status_code == 200
    doc = worker_client.get(location).get_json()
    assert doc["status"] == "canceled"
    assert "result" not in doc


def test_finished_jobs_are_purged_after_their_retention(make_jobs_app: Callable[..., Flask]) -> None:
    client = make_jobs_app(jobs_workers=1, jobs_retention_s=1, jobs_purge_interval_s=0.2).test_client()
    location = client.post("/v1/Echo", json={"text": "hi"}, headers=PREFER).headers["Location"]
    assert finished(client, location)["status"] == "succeeded"

    wait_for(lambda: client.get(location).status_code == 404, timeout=10)


def test_metrics_count_each_state_a_job_enters(make_jobs_app: Callable[..., Flask]) -> None:
    app = make_jobs_app(jobs_workers=1)
    client = app.test_client()

    location = client.post("/v1/Echo", json={"text": "hi"}, headers=PREFER).headers["Location"]
    finished(client, location)
    text = client.get("/metrics").get_data(as_text=True)

    for state in ("queued", "running", "succeeded"):
        assert f'model_serving_jobs_total{{model="Echo",state="{state}"}} 1.0' in text, state
