"""gunicorn stops cleanly with every example model loaded: no worker dies on a signal, nothing is lost.

Issue 22: with ONNX models loaded in the master (MODEL_LOADING=eager, preload_app), every
worker used to abort at exit (`terminate called ...`, SIGABRT, SIGSEGV): ONNX Runtime's
telemetry thread did not survive the fork, and threads still inside ONNX Runtime when the
interpreter finalized called `std::terminate`. serving/runtime/onnx_process.py says how
that was fixed; these tests run the server as the docs do and read its whole log.
"""

from __future__ import annotations

import json
import re
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from serving.runtime.handlers import discover_handlers
from tests.servers import PROJECT_ROOT, ServerProcess

pytestmark = pytest.mark.e2e

# Lines that mean a process ended badly, whatever the exit status of the master.
CRASH_SIGNS = re.compile(
    r"was sent SIG|terminate called|Segmentation fault|Aborted|core dumped|exited with code [1-9]|Traceback"
)


def _examples() -> list[tuple[str, Any]]:
    """(model, payload) for every example of every handler in the project's handlers/."""
    pairs = []
    for spec in discover_handlers(PROJECT_ROOT / "handlers"):
        for example in spec.input_schema.get("examples", []):
            pairs.append((spec.name, example))
    return pairs


def _predict(server: ServerProcess, model: str, payload: Any) -> str:
    """POST one prediction; the request id the server answered with (it must succeed)."""
    request = urllib.request.Request(
        f"{server.url}/v1/{model}",
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json", "Connection": "close"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            assert response.status == 200, model
            return str(response.headers["X-Request-Id"])
    except urllib.error.HTTPError as exc:  # say why: e.g. a model whose files are not exported here
        raise AssertionError(f"{model}: {exc.code} {exc.read()[:300]!r}") from None


def _send_traffic(server: ServerProcess, rounds: int) -> list[str]:
    """Every example to its model, `rounds` times, from four threads at once; the request ids."""
    work = _examples() * rounds
    ids: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def client(share: list[tuple[str, Any]]) -> None:
        for model, payload in share:
            try:
                request_id = _predict(server, model, payload)
            except BaseException as exc:  # reported below, on the test thread
                errors.append(exc)
                return
            with lock:
                ids.append(request_id)

    threads = [threading.Thread(target=client, args=(work[i::4],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    return ids


def _metrics_dir(log: str) -> Path:
    match = re.search(r"metrics directory: (\S+) \(private", log)
    assert match, "gunicorn said where the metrics go"
    return Path(match.group(1))


def _logged_predictions(log: str) -> set[str]:
    ids = set()
    for line in log.splitlines():
        if line.startswith("{") and '"message":"prediction"' in line:
            ids.add(json.loads(line)["request_id"])
    return ids


@pytest.mark.parametrize(
    ("rounds", "extra_args", "workers"),
    [
        pytest.param(0, (), "2", id="stopped-right-after-start"),
        pytest.param(3, (), "2", id="stopped-after-traffic-to-every-model"),
        pytest.param(3, (), "1", id="one-worker-stopped-after-traffic"),
        pytest.param(3, ("--max-requests", "5"), "2", id="workers-recycled-by-max-requests"),
    ],
)
def test_gunicorn_stops_cleanly_with_every_model_loaded(
    start_gunicorn: Callable[..., Any], rounds: int, extra_args: tuple[str, ...], workers: str
) -> None:
    env = {
        "GUNICORN_WORKERS": workers,
        "MODEL_LOADING": "eager",
        "PREDICTION_LOG": "true",
        "PREDICTION_LOG_SAMPLE_RATE": "1",
        "METRICS": "true",
    }
    with start_gunicorn(env, *extra_args) as server:
        request_ids = _send_traffic(server, rounds)
        if extra_args:  # a recycled worker was replaced and the server still answers
            deadline = time.monotonic() + 30
            while "Autorestarting worker" not in server.log() and time.monotonic() < deadline:
                time.sleep(0.1)
            assert "Autorestarting worker" in server.log()
            request_ids += _send_traffic(server, 1)
        status = server.stop(signal.SIGTERM, timeout=60)
        log = server.log()

    assert status == 0, log[-3000:]
    assert not CRASH_SIGNS.findall(log), log[-5000:]
    assert "Shutting down: Master" in log
    assert _logged_predictions(log) >= set(request_ids), "every sampled prediction was logged"
    assert len(request_ids) == rounds * len(_examples()) + (len(_examples()) if extra_args else 0)
    assert not _metrics_dir(log).exists(), "the private metrics directory was removed"


# A worker leaving gunicorn, as far as signals go: gunicorn's Python handlers installed
# (SIGQUIT's exits at once), the exit hook's first step (or not), then finalization, during
# which an object of the module is deleted slowly: the window in which a stop signal sent
# by the master to a worker still in its table used to kill it (seen in CI, a worker
# recycled by max_requests while the server was stopped).
_EXITING_WORKER = """
import signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: None)
signal.signal(signal.SIGQUIT, lambda *_: sys.exit(0))
signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
if sys.argv[1] == "hook":
    from serving.platform.gunicorn_worker import ignore_stop_signals
    ignore_stop_signals()

class Late:
    def __del__(self):
        print("finalizing", flush=True)
        time.sleep(1)
        print("finalized", flush=True)

late = Late()
"""


@pytest.mark.parametrize(
    ("exit_hook", "stop_signal", "expected_status", "expected_last_line"),
    [
        pytest.param("hook", signal.SIGTERM, 0, "finalized", id="SIGTERM-ignored"),
        pytest.param("hook", signal.SIGQUIT, 0, "finalized", id="SIGQUIT-ignored"),
        pytest.param("hook", signal.SIGINT, 0, "finalized", id="SIGINT-ignored"),
        # Without the hook's first step, the same signal kills the process: the window is real.
        pytest.param("none", signal.SIGTERM, -signal.SIGTERM, "finalizing", id="without-the-hook-SIGTERM-kills"),
    ],
)
def test_a_stop_signal_reaching_an_exiting_worker_does_not_kill_it(
    exit_hook: str, stop_signal: signal.Signals, expected_status: int, expected_last_line: str
) -> None:
    import subprocess
    import sys

    with subprocess.Popen(
        [sys.executable, "-c", _EXITING_WORKER, exit_hook],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        assert child.stdout is not None
        lines = [child.stdout.readline().strip()]
        assert lines == ["finalizing"]
        child.send_signal(stop_signal)
        lines += [line.strip() for line in child.stdout]
        assert child.wait(timeout=30) == expected_status
    assert lines[-1] == expected_last_line
