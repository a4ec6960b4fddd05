"""BigQuery remote functions against a real gunicorn, driven by bench/bigquery_driver.py's stand-in.

Each test reads the server's log afterwards: a worker killed by a signal, a timeout or a
traceback the test did not cause is a failure even when every answer was right.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from bench.bigquery_driver import StandIn, json_calls, mismatches, native_answers, positional_calls
from tests.conftest import FIXTURE_HANDLERS
from tests.jobs.oidc import SERVICE_ACCOUNT, CertificateServer, Issuer
from tests.servers import PROJECT_ROOT, ServerProcess, base_env, free_port, gunicorn_command, running_server

pytestmark = pytest.mark.e2e

HANDLERS = FIXTURE_HANDLERS / "bigquery"
TYPED_COLUMNS = ("count", "amount", "label", "data", "day", "note")
_SIGNALS = ("was sent SIG", "terminated due to signal", "WORKER TIMEOUT", "Traceback")


def assert_clean_log(server: ServerProcess, *expected: str) -> None:
    """No worker died on a signal or timed out, and no traceback but the `expected` ones."""
    log = server.log()
    for marker in _SIGNALS:
        lines = [line for line in log.splitlines() if marker in line and not any(e in line for e in expected)]
        assert not lines, f"{marker!r} in the server log:\n" + "\n".join(lines[:5])


def post(server: ServerProcess, model: str, body: Any, token: str | None = None) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.post(f"{server.url}/v1/bigquery/{model}", json=body, headers=headers, timeout=60)


def calls_body(*calls: list[Any], **context: str) -> dict[str, Any]:
    return {"requestId": "r1", "caller": "//bigquery", "sessionUser": "u@example.com", "userDefinedContext": context,
            "calls": list(calls)}  # fmt: skip


@pytest.fixture(scope="module")
def issuer() -> Issuer:
    return Issuer()


@pytest.fixture(scope="module")
def certs(issuer: Issuer) -> Iterator[str]:
    with CertificateServer(issuer) as server:
        yield server.url


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory, certs: str) -> Iterator[ServerProcess]:
    """Fixture models under gunicorn, callable only with a token of SERVICE_ACCOUNT."""
    port = free_port()
    env = {
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "GUNICORN_WORKERS": "2",
        "HANDLERS_DIR": str(HANDLERS),
        "BIGQUERY_INVOKERS": SERVICE_ACCOUNT,
        "BIGQUERY_CERTS_URL": certs,
        "METRICS": "true",
    }
    log_path = tmp_path_factory.mktemp("bigquery") / "gunicorn.log"
    with running_server(gunicorn_command(), port=port, log_path=log_path, env=env) as server:
        yield server


@pytest.fixture
def token(issuer: Issuer, guarded: ServerProcess) -> str:
    return issuer.token(guarded.url)


ROWS = [
    {"count": 1, "amount": 0.5, "label": "a"},
    {"count": "9007199254740993", "amount": "2.25", "label": "b", "data": "aGk=", "day": "2024-01-02"},
    {"count": 3, "amount": None, "label": "c", "note": None},
]


def test_both_argument_styles_and_the_encodings(guarded: ServerProcess, token: str) -> None:
    as_json = post(guarded, "Typed", calls_body(*json_calls(ROWS[:2])), token)
    positional = post(guarded, "Typed", calls_body(*positional_calls(ROWS[:2], TYPED_COLUMNS)), token)

    assert as_json.status_code == 200, as_json.text
    assert as_json.json() == positional.json()
    replies = as_json.json()["replies"]
    assert replies[1]["echo"] == {
        "count": 9007199254740993,
        "amount": 2.25,
        "label": "b",
        "data": "aGk=",
        "day": "2024-01-02",
    }
    assert replies[1]["bytes"] == 2
    assert_clean_log(guarded)


def test_output_and_both_on_error_modes(guarded: ServerProcess, token: str) -> None:
    rows = [[ROWS[0]], [ROWS[2]], [{**ROWS[0], "label": "reject"}], [{**ROWS[0], "label": "z"}]]

    failed = post(guarded, "Typed", calls_body(*rows, output="label"), token)
    nulled = post(guarded, "Typed", calls_body(*rows, output="label", on_error="null"), token)

    assert failed.status_code == 400
    assert failed.json() == {"errorMessage": "row 1: 'amount' is a required property"}
    assert nulled.json() == {"replies": ["a", None, None, "z"]}
    metrics = requests.get(f"{guarded.url}/metrics", timeout=10).text
    assert 'model_serving_rows_total{model="Typed",outcome="null",route="/v1/bigquery/<name>"}' in metrics
    assert '"row": 2' in guarded.log() or '"row":2' in guarded.log()
    assert_clean_log(guarded)


@pytest.mark.parametrize(
    ("claims", "status"),
    [
        pytest.param({}, 200, id="good"),
        pytest.param({"exp": 1_000_000_000, "iat": 999_999_000}, 401, id="expired"),
        pytest.param({"aud": "https://elsewhere.example"}, 401, id="wrong-audience"),
        pytest.param({"email": "other@p.iam.gserviceaccount.com"}, 403, id="unlisted"),
    ],
)
def test_tokens(guarded: ServerProcess, issuer: Issuer, claims: dict[str, Any], status: int) -> None:
    token = issuer.token(claims.pop("aud", guarded.url), **claims)

    response = post(guarded, "Typed", calls_body([ROWS[0]]), token)

    assert response.status_code == status
    assert set(response.json()) == ({"replies"} if status == 200 else {"errorMessage"})
    assert post(guarded, "Typed", calls_body([ROWS[0]])).status_code == 401  # no token at all
    assert_clean_log(guarded)


def test_a_crash_is_a_500_with_the_request_id(guarded: ServerProcess, token: str) -> None:
    response = post(guarded, "Typed", calls_body([{**ROWS[0], "label": "crash"}]), token)

    assert response.status_code == 500
    assert response.headers["X-Request-Id"] in response.json()["errorMessage"]
    assert_clean_log(guarded, "the model crashed", "Traceback")


def test_a_full_queue_is_a_429_with_retry_after_and_the_driver_finishes(
    start_gunicorn: Callable[..., Any],
) -> None:
    env = {
        "HANDLERS_DIR": str(HANDLERS),
        "BIGQUERY_TRUST_FRONT_END": "true",
        "GUNICORN_WORKERS": "1",
        "BIGQUERY_MAX_IN_FLIGHT": "1",
        "BIGQUERY_QUEUE_LIMIT": "0",
    }
    with start_gunicorn(env) as server:
        slow = threading.Thread(target=post, args=(server, "Slow", calls_body([{"seconds": 1.5}])))
        slow.start()
        time.sleep(0.5)
        refused = post(server, "Slow", calls_body([{"seconds": 0}]))
        slow.join()
        # The stand-in retries its 429s until each request gets a slot.
        driver = StandIn(f"{server.url}/v1/bigquery/Slow", rows_per_request=1, concurrency=4, backoff_s=0.05)
        report = driver.run([[{"seconds": 0.2}]] * 8)

        assert refused.status_code == 429
        assert refused.headers["Retry-After"] == "1"
        assert set(refused.json()) == {"errorMessage"}
        assert report.replies == [{"slept": 0.2}] * 8
        assert report.statuses.get(429, 0) > 0
        assert_clean_log(server)


def test_a_loading_model_is_a_503_with_retry_after(tmp_path: Path) -> None:
    port = free_port()
    env = {
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "GUNICORN_WORKERS": "1",
        "HANDLERS_DIR": str(FIXTURE_HANDLERS / "bigquery_loading"),
        "BIGQUERY_TRUST_FRONT_END": "true",
        "MODEL_LOADING": "lazy",
    }
    with running_server(
        gunicorn_command(), port=port, log_path=tmp_path / "g.log", env=env, ready_path="/healthz"
    ) as server:
        first = post(server, "Late", calls_body([1]))
        report = StandIn(f"{server.url}/v1/bigquery/Late", rows_per_request=1, concurrency=1).run([[2]])

        assert first.status_code == 503
        assert first.headers["Retry-After"] == "5"
        assert "loading" in first.json()["errorMessage"]
        assert report.replies == [{"x": 2, "model": "loaded"}]
        assert_clean_log(server)


def test_vertex_array_instances_on_predict_and_the_vertex_route(start_gunicorn: Callable[..., Any]) -> None:
    env = {"AIP_HEALTH_ROUTE": "/vertex/health", "AIP_PREDICT_ROUTE": "/vertex/predict", "DEFAULT_MODEL": "Iris"}
    rows = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
    objects = [
        dict(zip(("sepal_length", "sepal_width", "petal_length", "petal_width"), row, strict=True)) for row in rows
    ]
    with start_gunicorn(env) as server:
        vertex = requests.post(f"{server.url}/vertex/predict", json={"instances": rows}, timeout=30)
        predict = requests.post(f"{server.url}/v1/models/Iris:predict", json={"instances": rows}, timeout=30)
        expected = requests.post(f"{server.url}/v1/models/Iris:predict", json={"instances": objects}, timeout=30)

        assert vertex.status_code == predict.status_code == 200
        assert vertex.json() == predict.json() == expected.json()
        assert_clean_log(server)


def test_the_sql_generator_runs_under_flask(tmp_path: Path) -> None:
    env = base_env({"HANDLERS_DIR": str(HANDLERS)})
    result = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "main", "bigquery-sql", "Typed", "--endpoint", "https://s.example",
         "--connection", "p.us.c", "--dataset", "p.d", "--output", "label"],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert (
        "typed_label_args(count INT64, amount FLOAT64, label STRING, data BYTES, day STRING, note STRING) "
        "RETURNS STRING" in result.stdout
    )


def test_a_restart_in_the_middle_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    """Kill gunicorn (SIGKILL, master and workers) mid-table, start it again: the retries finish the table."""
    port = free_port()
    env = {
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "GUNICORN_WORKERS": "2",
        "BIGQUERY_TRUST_FRONT_END": "true",
    }
    rows = [
        {"sepal_length": 4.3 + (i % 36) / 10, "sepal_width": 2.0 + (i % 24) / 10, "petal_length": 1.0 + (i % 59) / 10,
         "petal_width": 0.1 + (i % 24) / 10}
        for i in range(12000)
    ]  # fmt: skip
    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    with running_server(gunicorn_command(), port=port, log_path=logs[0], env=env) as first:
        expected = native_answers(first.url, "Iris", rows[:300])
        driver = StandIn(
            f"{first.url}/v1/bigquery/Iris", rows_per_request=20, concurrency=4, backoff_s=0.2, max_backoff_s=2.0
        )
        outcome: dict[str, Any] = {}
        runner = threading.Thread(target=lambda: outcome.update(report=driver.run(json_calls(rows))))
        runner.start()
        deadline = time.monotonic() + 60
        while driver.answered < 20 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert runner.is_alive(), f"the table finished before the restart: make it longer ({outcome})"
        _kill_server(first)
    with running_server(gunicorn_command(), port=port, log_path=logs[1], env=env) as second:
        runner.join(120)
        report = outcome["report"]
        everything = native_answers(second.url, "Iris", rows)
        # Checked before the stop: a worker crash at exit after load is a known problem of
        # the base (ONNX Runtime's threads; see the branch report), not of this route.
        assert_clean_log(second)

    assert len(report.replies) == len(rows)
    assert mismatches(report.replies[:300], expected) == []
    assert mismatches(report.replies, everything) == []
    assert report.retries > 0  # the restart was felt, and retried through


def _kill_server(server: ServerProcess) -> None:
    children = Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children").read_text().split()
    server.process.send_signal(signal.SIGKILL)
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)
    server.process.wait(10)


def test_every_driver_reply_equals_the_native_answer(guarded: ServerProcess, issuer: Issuer) -> None:
    rows = [{"count": i, "amount": i / 4, "label": f"l{i}"} for i in range(120)]
    driver = StandIn(
        f"{guarded.url}/v1/bigquery/Typed",
        rows_per_request=25,
        concurrency=4,
        authorization=lambda: f"Bearer {issuer.token(guarded.url)}",
    )

    report = driver.run(json_calls(rows))

    assert mismatches(report.replies, native_answers(guarded.url, "Typed", rows)) == []
    assert report.requests == 5
    assert json.dumps(report.replies)  # every reply is plain JSON
