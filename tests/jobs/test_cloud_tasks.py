"""The Cloud Tasks dispatcher: who may call the run endpoint, and the enqueue/deliver round trip.

The round trips go through gcloud-tasks-emulator (in its own virtual environment, on
loopback) to a real gunicorn: App Engine tasks with Firestore as the store (App Engine's
serverless combination), and HTTP tasks with OIDC tokens with PostgreSQL (Cloud Run with
Cloud SQL). The emulator does not mint OIDC tokens, so for HTTP tasks a small proxy plays
Google's part: it adds a token signed by a test key whose certificate the app fetches
from the proxy, as it would from Google.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask

from serving.jobs.service import get_jobs
from tests.conftest import require_service
from tests.jobs.conftest import FIRESTORE_PROJECT, JOB_HANDLERS, tasks_emulator_python, wait_for
from tests.jobs.oidc import SERVICE_ACCOUNT, Issuer
from tests.servers import free_port

QUEUE = "projects/demo-model-serving/locations/here/queues/jobs"
PREFER = {"Prefer": "respond-async"}
JOB_ID = "ab" * 16


class _Google(http.server.ThreadingHTTPServer):
    """Serves the issuer's certificates and, as a proxy, adds OIDC tokens to task requests."""

    def __init__(self, issuer: Issuer) -> None:
        self.issuer = issuer
        self.upstream = ""
        self.audience = ""
        self.forwarded: list[int] = []
        super().__init__(("127.0.0.1", 0), _GoogleHandler)
        self.url = f"http://127.0.0.1:{self.server_port}"


class _GoogleHandler(http.server.BaseHTTPRequestHandler):
    server: _Google

    def do_GET(self) -> None:
        body = json.dumps(self.server.issuer.certs()).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        data = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        token = self.server.issuer.token(self.server.audience)
        forward = urllib.request.Request(
            self.server.upstream + self.path,
            data=data,
            method="POST",
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(forward, timeout=60) as response:
                status = response.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        self.server.forwarded.append(status)
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def google() -> Iterator[_Google]:
    server = _Google(Issuer())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def tasks_emulator(port: int, target_port: int, log_path: Path) -> Iterator[None]:
    python = tasks_emulator_python()
    require_service(python.exists(), f"the Cloud Tasks emulator's venv is missing ({python}); .ci/run makes it")
    launcher = Path(__file__).with_name("tasks_emulator.py")
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(python), str(launcher), str(port), str(target_port), QUEUE], stdout=log, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the tasks emulator did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.1)
        yield
    finally:
        process.terminate()
        process.wait(10)


def _settings(google: _Google | None = None, **overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "handlers_dir": JOB_HANDLERS,
        "jobs_dispatcher": "cloud-tasks",
        "jobs_tasks_queue": QUEUE,
        "jobs_tasks_target": "http",
        "jobs_tasks_url": "https://jobs-abc123-uc.a.run.app",
        "jobs_tasks_service_account": SERVICE_ACCOUNT,
        "jobs_tasks_oidc_certs_url": (google.url + "/certs") if google else "http://127.0.0.1:9/certs",
    }
    values.update(overrides)
    return values


@pytest.fixture
def http_target_app(make_jobs_app: Callable[..., Flask], google: _Google) -> Flask:
    return make_jobs_app(**_settings(google))


AUDIENCE = "https://jobs-abc123-uc.a.run.app"


@pytest.mark.parametrize(
    ("claims", "status"),
    [
        ({}, 200),
        ({"aud": "https://someone-else.a.run.app"}, 403),
        ({"email": "attacker@evil.iam.gserviceaccount.com"}, 403),
        ({"email_verified": False}, 403),
        ({"iss": "https://evil.example"}, 403),
        ({"exp": int(time.time()) - 600, "iat": int(time.time()) - 900}, 403),
    ],
    ids=["valid", "wrong-audience", "wrong-account", "unverified-email", "wrong-issuer", "expired"],
)
def test_the_run_endpoint_trusts_only_the_queues_oidc_token(
    http_target_app: Flask, google: _Google, claims: dict[str, Any], status: int
) -> None:
    claims = {"aud": AUDIENCE, **claims}
    token = google.issuer.token(claims.pop("aud"), **claims)

    response = http_target_app.test_client().post(
        f"/internal/jobs/{JOB_ID}/run", headers={"Authorization": f"Bearer {token}"}
    )

    assert response.status_code == status, response.get_json()
    if status == 200:
        assert response.get_json() == {"job_id": JOB_ID, "status": "unknown"}
    else:
        assert response.get_json()["code"] == "forbidden"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer not-a-jwt"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"X-AppEngine-QueueName": "jobs"},
        {"X-CloudTasks-QueueName": "jobs"},
    ],
    ids=["nothing", "garbage-token", "basic-auth", "forged-app-engine-header", "cloud-tasks-header"],
)
def test_anyone_else_gets_403(http_target_app: Flask, headers: dict[str, str]) -> None:
    response = http_target_app.test_client().post(f"/internal/jobs/{JOB_ID}/run", headers=headers)

    assert response.status_code == 403


def test_a_token_signed_by_another_key_is_refused(http_target_app: Flask) -> None:
    forger = Issuer(kid="test-key-1")  # same key id, different key

    token = forger.token(AUDIENCE)
    response = http_target_app.test_client().post(
        f"/internal/jobs/{JOB_ID}/run", headers={"Authorization": f"Bearer {token}"}
    )

    assert response.status_code == 403


def test_app_engine_target_trusts_only_its_queue_header(make_jobs_app: Callable[..., Flask], tmp_path: Path) -> None:
    app = make_jobs_app(
        **_settings(jobs_tasks_target="app_engine", gae_env="standard", jobs_store="postgresql"),
        database_url=f"postgresql://postgres@127.0.0.1:{free_port()}/none",
    )
    client = app.test_client()

    other_queue = client.post(f"/internal/jobs/{JOB_ID}/run", headers={"X-AppEngine-QueueName": "other"})
    none = client.post(f"/internal/jobs/{JOB_ID}/run")
    ours = client.post(f"/internal/jobs/{JOB_ID}/run", headers={"X-AppEngine-QueueName": "jobs"})

    assert other_queue.status_code == 403
    assert none.status_code == 403
    assert ours.status_code == 503  # trusted; the (unreachable) database answers next


def test_internal_endpoints_do_not_exist_with_the_threads_dispatcher(make_jobs_app: Callable[..., Flask]) -> None:
    response = (
        make_jobs_app().test_client().post(f"/internal/jobs/{JOB_ID}/run", headers={"X-AppEngine-QueueName": "x"})
    )

    assert response.status_code == 404


def _poll(url: str, job_id: str, timeout: float = 40) -> dict[str, Any]:
    def terminal() -> dict[str, Any] | None:
        doc: dict[str, Any] = requests.get(f"{url}/v1/jobs/{job_id}", timeout=10).json()
        return doc if doc["status"] in ("succeeded", "failed", "canceled") else None

    doc: dict[str, Any] = wait_for(terminal, timeout, interval=0.1)
    return doc


@pytest.mark.e2e
def test_app_engine_tasks_round_trip_with_firestore(
    start_gunicorn: Callable[..., Any], firestore_emulator: str, tmp_path: Path
) -> None:
    emulator_port = free_port()
    env = {
        "HANDLERS_DIR": str(JOB_HANDLERS),
        "GUNICORN_WORKERS": "2",
        "GAE_ENV": "standard",  # what App Engine sets; trusting X-AppEngine-QueueName needs it
        "JOBS_STORE": "firestore",
        "JOBS_FIRESTORE_PROJECT": FIRESTORE_PROJECT,
        "JOBS_FIRESTORE_COLLECTION": f"jobs_e2e_{free_port()}",
        "FIRESTORE_EMULATOR_HOST": firestore_emulator,
        "JOBS_DISPATCHER": "cloud-tasks",
        "JOBS_TASKS_QUEUE": QUEUE,
        "JOBS_TASKS_TARGET": "app_engine",
        "JOBS_TASKS_EMULATOR_HOST": f"127.0.0.1:{emulator_port}",
    }
    with start_gunicorn(env) as server, tasks_emulator(emulator_port, server.port, tmp_path / "tasks.log"):
        submitted = requests.post(f"{server.url}/v1/Echo", json={"text": "via tasks"}, headers=PREFER, timeout=10)
        failing = requests.post(f"{server.url}/v1/Failing?async=true", json={}, timeout=10)
        job_id = submitted.json()["job_id"]
        doc = _poll(server.url, job_id)
        failed = _poll(server.url, failing.json()["job_id"])
        forged = requests.post(f"{server.url}/internal/jobs/{job_id}/run", timeout=10)
        log = server.log()

    assert submitted.status_code == 202
    assert doc["status"] == "succeeded"
    assert doc["result"] == {"text": "via tasks"}
    assert doc["attempts"] == 1
    assert failed["status"] == "failed"
    assert failed["error"]["code"] == "internal"
    assert forged.status_code == 403  # no X-AppEngine-QueueName: not the queue
    assert f"/internal/jobs/{job_id}/run" in log


@pytest.mark.e2e
def test_http_tasks_round_trip_with_oidc_and_postgresql(
    start_gunicorn: Callable[..., Any], pg_url: str, google: _Google, tmp_path: Path
) -> None:
    emulator_port = free_port()
    hooks: list[dict[str, Any]] = []
    hook_server = _HookServer(hooks, failures=1)
    env = {
        "HANDLERS_DIR": str(JOB_HANDLERS),
        "GUNICORN_WORKERS": "2",
        "DATABASE_URL": pg_url,
        "JOBS_DISPATCHER": "cloud-tasks",
        "JOBS_TASKS_QUEUE": QUEUE,
        "JOBS_TASKS_TARGET": "http",
        "JOBS_TASKS_URL": google.url,  # tasks reach the service through the token-adding proxy
        "JOBS_TASKS_SERVICE_ACCOUNT": SERVICE_ACCOUNT,
        "JOBS_TASKS_OIDC_CERTS_URL": google.url + "/certs",
        "JOBS_TASKS_EMULATOR_HOST": f"127.0.0.1:{emulator_port}",
        "JOBS_WEBHOOK_ALLOW_LOOPBACK": "true",
        "JOBS_WEBHOOK_BACKOFF_S": "0.2",
    }
    google.audience = google.url
    with hook_server, start_gunicorn(env) as server, tasks_emulator(emulator_port, 9, tmp_path / "tasks.log"):
        google.upstream = server.url
        submitted = requests.post(
            f"{server.url}/v1/BackgroundOnly", json={"n": 21}, headers={"Webhook-Url": hook_server.url}, timeout=10
        )
        doc = _poll(server.url, submitted.json()["job_id"])
        final = wait_for(
            lambda: (
                (d := requests.get(f"{server.url}/v1/jobs/{doc['job_id']}", timeout=10).json())["webhook"]["state"]
                == "delivered"
                and d
            ),
            timeout=30,
        )

    assert submitted.status_code == 202
    assert doc["status"] == "succeeded"
    assert doc["result"] == 42
    assert 200 in google.forwarded  # the run request carried a token the app accepted
    # The first webhook delivery (inline, after the run) failed; a Cloud Tasks task retried it.
    assert [hook["status"] for hook in hooks] == ["succeeded", "succeeded"]
    assert final["webhook"] == {"state": "delivered"}


class _HookServer:
    """A loopback webhook receiver that answers 500 to the first `failures` deliveries."""

    def __init__(self, hooks: list[dict[str, Any]], failures: int) -> None:
        outer = self
        self.failures = failures

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                hooks.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(500 if len(hooks) <= outer.failures else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"

    def __enter__(self) -> _HookServer:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class _RecordingTasks:
    """Stands in for CloudTasksDispatcher: records what would be enqueued."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, float]] = []

    def enqueue_run(self, job: Any) -> None:
        self.calls.append(("run", job.id, 0.0))

    def enqueue_webhook(self, job: Any, delay_s: float) -> None:
        self.calls.append(("webhook", job.id, delay_s))


def test_submit_enqueues_a_run_task_and_cancel_a_webhook_task(http_target_app: Flask) -> None:
    service = get_jobs(http_target_app)
    assert service is not None
    recorder = _RecordingTasks()
    service.tasks = recorder  # type: ignore[assignment]
    client = http_target_app.test_client()

    submitted = client.post("/v1/Echo?async=true&webhook=https://hooks.example/done", json={"text": "hi"})
    job_id = submitted.get_json()["job_id"]
    canceled = client.delete(f"/v1/jobs/{job_id}")

    assert submitted.status_code == 202
    assert canceled.status_code == 200
    # The DELETE did not call the webhook itself: a task will.
    assert recorder.calls == [("run", job_id, 0.0), ("webhook", job_id, 0.0)]
    assert canceled.get_json()["webhook"] == {"state": "pending"}
