"""gunicorn.conf.py's worker class spreads keep-alive connections over the worker processes."""

from __future__ import annotations

import http.client
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import pytest
from gunicorn.workers.gthread import ThreadWorker

from tests.conftest import FIXTURE_HANDLERS
from tests.platform.patient_worker import DEFERS

pytestmark = pytest.mark.e2e

WORKER_HANDLERS = FIXTURE_HANDLERS / "workers"
# The patient subclasses only wait longer, so that a slow machine still shows the rule; one
# for each worker class gunicorn.conf.py may pick.
PATIENT = {
    "gthread": ("--worker-class", "tests.platform.patient_worker.PatientBalancedWorker"),
    "followers": ("--worker-class", "tests.platform.patient_worker.PatientFollowerWorker"),
}


def _served_by(connection: http.client.HTTPConnection) -> int:
    connection.request("POST", "/v1/Process", body=b"{}", headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    assert response.status == 200
    return int(json.loads(response.read())["result"])


def _wait_for_workers(url: str, count: int, timeout: float = 20.0) -> None:
    """Until `count` worker processes have answered: /readyz 200 means one of them is up."""
    host, port = url.removeprefix("http://").split(":")
    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    while len(seen) < count:
        assert time.monotonic() < deadline, f"only workers {seen} answered"
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        try:
            seen.add(_served_by(connection))
        finally:
            connection.close()
        time.sleep(0.02)


@contextmanager
def _keep_alive_clients(url: str, count: int) -> Iterator[list[int]]:
    """Open `count` connections one after the other, each kept open; the pid serving each.

    Plain gthread gave all of them to whichever worker woke first (the test failed).
    """
    host, port = url.removeprefix("http://").split(":")
    with ExitStack() as stack:
        pids = []
        for _ in range(count):
            connection = http.client.HTTPConnection(host, int(port), timeout=10)
            stack.callback(connection.close)
            pids.append(_served_by(connection))
            time.sleep(0.05)  # this connection is accepted before the next one arrives
        # Each connection stays with the process that accepted it.
        yield pids


@pytest.mark.parametrize("worker", sorted(PATIENT))
@pytest.mark.parametrize("threads", [1, 2, 8])
def test_keep_alive_connections_are_split_evenly_between_workers(
    start_gunicorn: Callable[..., Any], threads: int, worker: str
) -> None:
    env = {"HANDLERS_DIR": str(WORKER_HANDLERS), "GUNICORN_WORKERS": "2", "GUNICORN_THREADS": str(threads)}
    with start_gunicorn(env, *PATIENT[worker]) as server:
        _wait_for_workers(server.url, 2)
        with _keep_alive_clients(server.url, 6) as pids:
            assert sorted(Counter(pids).values()) == [3, 3], pids


@pytest.mark.parametrize("worker", sorted(PATIENT))
def test_a_new_connection_is_served_at_once_when_the_workers_hold_equal_numbers(
    start_gunicorn: Callable[..., Any], worker: str
) -> None:
    env = {"HANDLERS_DIR": str(WORKER_HANDLERS), "GUNICORN_WORKERS": "2", "GUNICORN_THREADS": "1"}
    with start_gunicorn(env, *PATIENT[worker]) as server:
        _wait_for_workers(server.url, 2)
        with _keep_alive_clients(server.url, 2) as pids:
            assert len(set(pids)) == 2  # one connection each: both workers are full
            logged = len(server.log())
            with _keep_alive_clients(server.url, 1) as more:
                assert more[0] in pids
            # Nobody holds fewer, so nobody defers (the patient worker logs each deferral).
            assert DEFERS not in server.log()[logged:]


def test_gunicorn_conf_selects_the_follower_worker_on_linux(start_gunicorn: Callable[..., Any]) -> None:
    from serving.platform.gunicorn_followers import FollowerThreadWorker
    from serving.platform.gunicorn_worker import BalancedThreadWorker

    assert issubclass(FollowerThreadWorker, BalancedThreadWorker)
    assert issubclass(FollowerThreadWorker, ThreadWorker)
    env = {"HANDLERS_DIR": str(WORKER_HANDLERS), "GUNICORN_WORKERS": "1"}
    with start_gunicorn(env) as server:  # this machine has epoll, as Google's have
        assert "Using worker: serving.platform.gunicorn_followers.FollowerThreadWorker" in server.log()
