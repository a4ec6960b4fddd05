"""Queued work nobody waits for is dropped before it starts (issue 22, section 3), under gunicorn.

One worker, so that every request meets the same batcher. `Hold` (a fixture handler)
prepares and then holds the model for as long as asked, and logs each stage's `x`; a
request queued behind it whose budget is spent, or whose client has gone, must leave
without its `x` ever running. tests/runtime/test_request_scope.py covers the same in one process.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import FIXTURE_HANDLERS
from tests.rawhttp import request_bytes
from tests.servers import ServerProcess, free_port, gunicorn_command, running_server

pytestmark = pytest.mark.e2e

BUDGET_S = 3.0
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    port = free_port()
    tmp = Path(tmp_path_factory.mktemp("queued"))
    env = {
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "GUNICORN_WORKERS": "1",
        "HANDLERS_DIR": str(FIXTURE_HANDLERS / "queued"),
        "PREDICT_TIMEOUT_S": str(BUDGET_S),
        "JOBS_DATA_DIR": str(tmp / "jobs"),
    }
    with running_server(gunicorn_command(), port=port, log_path=tmp / "gunicorn.log", env=env) as process:
        yield process


def _post(server: ServerProcess, payload: dict[str, Any]) -> requests.Response:
    return requests.post(server.url + "/v1/Hold", json=payload, timeout=30)


def _logged(server: ServerProcess, stage: str, x: int) -> bool:
    return f'"message":"Hold {stage} x={x}"' in server.log()


def _ran(server: ServerProcess, x: int) -> bool:
    return _logged(server, "ran", x)


def _wait_for(server: ServerProcess, stage: str, x: int) -> float:
    """When `x` was seen to reach `stage` ("preparing" or "ran")."""
    deadline = time.monotonic() + 10
    while not _logged(server, stage, x):
        assert time.monotonic() < deadline, f"x={x} never logged {stage}"
        time.sleep(0.05)
    return time.monotonic()


def _status_line(server: ServerProcess, request_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for line in server.log().splitlines():
            if request_id in line and '"status"' in line:
                return dict(json.loads(line))
        time.sleep(0.1)
    raise AssertionError(f"no request line for {request_id}")


def test_queued_work_whose_budget_is_spent_never_runs(server: ServerProcess) -> None:
    """x=2's budget starts before its 2 s of preparing; it then queues, with 1 s left, behind
    x=1, which holds the model until its own budget ends (0.8 s later than x=2's): x=2
    leaves the queue at its deadline and is never run, though the model frees up after."""
    hold_s = BUDGET_S + 2
    with ThreadPoolExecutor(2) as pool:
        late = pool.submit(_post, server, {"x": 2, "prepare_s": BUDGET_S - 1})
        _wait_for(server, "preparing", 2)
        time.sleep(0.8)
        holder = pool.submit(_post, server, {"x": 1, "hold_s": hold_s})
        holding_since = _wait_for(server, "ran", 1)
        assert not late.done(), "x=2 was still preparing when x=1 took the model"
        queued = late.result()
        assert holder.result().status_code == 504
    assert queued.status_code == 504, queued.text[:300]
    assert "did not start this request within its time budget" in queued.json()["message"]

    # x=1's call runs on for nobody until hold_s; then a new request (queued behind
    # anything still waiting, in order) runs: x=2, had it stayed queued, would run first.
    time.sleep(max(0.0, holding_since + hold_s + 0.5 - time.monotonic()))
    deadline = time.monotonic() + 15
    while (after := _post(server, {"x": 3})).status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert after.status_code == 200, after.text[:300]
    assert after.json()["result"] == 3
    assert not _ran(server, 2), "a queued request whose budget was spent ran anyway"


def test_queued_work_whose_client_left_never_runs(server: ServerProcess) -> None:
    request_id = "queued-client-leaves-01"
    with ThreadPoolExecutor(1) as pool:
        holder = pool.submit(_post, server, {"x": 10, "hold_s": 1.5})  # well within the budget
        _wait_for(server, "ran", 10)
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            body = json.dumps({"x": 11}).encode()
            sock.sendall(request_bytes("POST", "/v1/Hold", body, {**JSON, "X-Request-Id": request_id}))
            time.sleep(0.3)  # queued behind x=10; then the client leaves
        assert holder.result().status_code == 200

    line = _status_line(server, request_id)
    assert line["status"] == 499, line
    assert line["latency_ms"] < BUDGET_S * 1000, "dropped when its turn came, not when its budget ran out"
    assert _post(server, {"x": 12}).status_code == 200
    assert not _ran(server, 11), "a queued request whose client had gone ran anyway"
