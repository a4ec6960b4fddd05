"""End to end: the real gunicorn with gunicorn.conf.py, curl, and the start/stop scripts."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.servers import PROJECT_ROOT, VENV_BIN, base_env, free_port, http_status, running_server

pytestmark = pytest.mark.e2e


def _curl(*args: str) -> tuple[int, dict[str, Any]]:
    """Run curl as the tutorial's request-demo.sh does; return (status, JSON body)."""
    result = subprocess.run(
        ["curl", "--silent", "--write-out", "\n%{http_code}", *args], capture_output=True, text=True, check=True
    )
    body, status = result.stdout.rsplit("\n", 1)
    return int(status), json.loads(body)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_tutorial_request_demo_with_curl(gunicorn_server: Any) -> None:
    url = gunicorn_server.url + "/v1/XXXModel"
    json_header = "Content-Type: application/json; charset=UTF-8"

    no_json = _curl("--request", "POST", "--url", url)
    invalid = _curl("--header", json_header, "--request", "POST", "--data", "{}", "--url", url)
    valid = _curl("--header", json_header, "--request", "POST", "--data", '{"name": "Leo"}', "--url", url)

    assert no_json[0] == 400
    assert no_json[1]["message"] == "No JSON object"
    assert invalid[0] == 400
    assert invalid[1]["message"] == "'name' is a required property"
    assert valid == (200, {"result": "Hello, Leo!"})


def test_cors_preflight_and_errors_over_http(gunicorn_server: Any) -> None:
    url = gunicorn_server.url + "/v1/XXXModel"

    preflight = requests.options(
        url,
        headers={
            "Origin": "https://widgets.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
        timeout=5,
    )
    not_found = requests.post(gunicorn_server.url + "/v1/Nope", json={}, timeout=5)
    too_large = requests.post(
        url, data=b"{" + b" " * (32 * 1024 * 1024) + b"}", timeout=30, headers={"Content-Type": "application/json"}
    )

    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "*"
    assert not_found.status_code == 404
    assert not_found.json()["code"] == "model_not_found"
    assert too_large.status_code == 413
    assert too_large.json()["code"] == "payload_too_large"


def test_logs_are_json_lines(gunicorn_server: Any) -> None:
    requests.post(
        gunicorn_server.url + "/v1/XXXModel", json={"name": "Leo"}, headers={"X-Request-Id": "e2e-1"}, timeout=5
    )
    time.sleep(0.2)

    lines = [line for line in gunicorn_server.log().splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]  # every line is JSON, gunicorn's own included
    assert any(e.get("request_id") == "e2e-1" and e.get("status") == 200 for e in entries)
    assert all("severity" in e for e in entries)


def test_sigterm_exits_cleanly(start_gunicorn: Any) -> None:
    with start_gunicorn() as server:
        code = server.stop(signal.SIGTERM)

    assert code == 0


def test_bad_setting_stops_gunicorn_naming_the_variable(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(VENV_BIN / "gunicorn"), "-c", "gunicorn.conf.py", "--check-config", "main:app"],
        cwd=PROJECT_ROOT,
        env=base_env({"GUNICORN_WORKERS": "lots", "PORT": "1"}),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode != 0
    assert "GUNICORN_WORKERS='lots'" in result.stdout + result.stderr


def test_development_server(tmp_path: Path) -> None:
    port = free_port()
    command = [str(VENV_BIN / "python"), "main.py", "--host", "127.0.0.1", "--port", str(port)]

    with running_server(command, port=port, log_path=tmp_path / "dev.log") as server:
        response = requests.post(server.url + "/v1/XXXModel", json={"name": "Leo"}, timeout=5)

    assert response.json() == {"result": "Hello, Leo!"}


def test_start_and_stop_scripts(tmp_path: Path) -> None:
    port = free_port()
    env = base_env(
        {
            "PORT": str(port),
            "HOST": "127.0.0.1",
            "RUN_DIR": str(tmp_path),
            "GUNICORN": str(VENV_BIN / "gunicorn"),
            "JOBS_DATA_DIR": str(tmp_path / "jobs"),
        }
    )

    started = subprocess.run(["bin/start.sh"], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=90)
    pid = int((tmp_path / "model-serving.pid").read_text())
    served = requests.post(f"http://127.0.0.1:{port}/v1/XXXModel", json={"name": "Leo"}, timeout=5)
    again = subprocess.run(["bin/start.sh"], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=30)
    stopped = subprocess.run(["bin/stop.sh"], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=60)

    assert started.returncode == 0, started.stderr
    assert served.json() == {"result": "Hello, Leo!"}
    assert again.returncode == 1
    assert "already running" in again.stderr
    assert stopped.returncode == 0, stopped.stderr
    assert not _alive(pid)
    assert not (tmp_path / "model-serving.pid").exists()
    assert http_status(f"http://127.0.0.1:{port}/healthz", timeout=1) is None
    assert (tmp_path / "model-serving.log").stat().st_size > 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_every_response_shape_over_one_keep_alive_connection(gunicorn_server: Any) -> None:
    # Small bodies leave with their headers in one send (serving/platform/gunicorn_response.py);
    # large, bodiless and HEAD responses as gunicorn sends them: all must frame correctly
    # one after the other on the same connection.
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", gunicorn_server.port, timeout=10)
    shapes = [
        # A body the app never reads (the method is refused before): gunicorn drains it, so
        # the next request on the connection starts where it should.
        ("POST", "/readyz", json.dumps({"unread": "x" * 3000}), {"Content-Type": "application/json"}, 405),
        ("POST", "/v1/XXXModel", json.dumps({"name": "Ada"}), {"Content-Type": "application/json"}, 200),
        ("POST", "/v1/XXXModel", json.dumps({"name": "Bo"}), {"Content-Type": "application/json"}, 200),
        ("GET", "/openapi.json", None, {}, 200),  # larger than the coalesced limit
        ("GET", "/docs/assets/docs.js", None, {}, 200),  # a small static file: gunicorn's sendfile
        ("HEAD", "/readyz", None, {}, 200),
        (
            "OPTIONS",
            "/v1/XXXModel",
            None,
            {"Origin": "https://a.example", "Access-Control-Request-Method": "POST"},
            204,
        ),
        ("POST", "/v1/XXXModel", "{", {"Content-Type": "application/json"}, 400),
        ("GET", "/readyz", None, {}, 200),
    ]
    for method, path, body, headers, status in shapes:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        data = response.read()
        assert response.status == status, (method, path, data[:200])
        assert response.getheader("X-Request-Id")
        if method == "HEAD" or status == 204:
            assert data == b""
        else:
            assert len(data) == int(response.getheader("Content-Length", "-1"))
            if response.getheader("Content-Type", "").startswith("application/json"):
                json.loads(data)
    assert len(json.loads(_get_json(connection, "/openapi.json"))) > 0
    connection.close()
    assert "Traceback" not in gunicorn_server.log()


def _get_json(connection: Any, path: str) -> bytes:
    connection.request("GET", path)
    return bytes(connection.getresponse().read())


def test_on_cloud_run_only_refusals_get_the_apps_request_line(start_gunicorn: Any) -> None:
    with start_gunicorn({"K_SERVICE": "api", "LOG_FORMAT": "json"}) as server:
        ok = requests.post(server.url + "/v1/XXXModel", json={"name": "Leo"}, timeout=5)
        refused = requests.post(server.url + "/v1/XXXModel", json={"nope": 1}, timeout=5)
        time.sleep(0.3)
        entries = [json.loads(line) for line in server.log().splitlines() if line.strip()]

    request_lines = [entry for entry in entries if entry.get("logger") == "serving.request"]
    assert ok.status_code == 200
    assert [entry["request_id"] for entry in request_lines] == [refused.headers["X-Request-Id"]]
    assert request_lines[0]["status"] == 400


def _worker_pids(master: int) -> list[int]:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return [int(pid) for pid in children]


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads /proc (Linux)")
def test_workers_parse_requests_with_gunicorns_c_parser(gunicorn_server: Any) -> None:
    # requirements.txt installs gunicorn_h1c, and gunicorn uses it when it imports; a
    # release that stops doing so (or an install that fails to build it) shows here.
    for _ in range(8):
        assert requests.post(gunicorn_server.url + "/v1/XXXModel", json={"name": "Ada"}, timeout=10).ok

    workers = _worker_pids(gunicorn_server.process.pid)
    mapped = [pid for pid in workers if "gunicorn_h1c" in Path(f"/proc/{pid}/maps").read_text()]

    assert workers
    assert mapped, "no worker loaded gunicorn_h1c"
