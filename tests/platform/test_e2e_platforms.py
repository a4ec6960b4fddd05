"""End to end: each deployment target started locally the way its platform starts it.

Four targets, each on free loopback ports, replay the same contract (tests/platform/contract.py):

- app-engine-gunicorn: app.yaml's `entrypoint` command with app.yaml's env_variables and
  the variables App Engine sets (PORT, GAE_*, GOOGLE_CLOUD_PROJECT);
- dev-appserver: `dev_appserver.py app.yaml` (through bin/dev-appserver: the uploaded
  files, a clean virtualenv, requirements.txt installed offline from the wheelhouse)
  over HTTPS, as `secure: always` demands;
- cloud-run-cmd: the Dockerfile's CMD (parsed from the file), in its shell form, with
  its ENV, service.yaml's env and Cloud Run's variables (PORT, K_SERVICE, K_REVISION);
- cloud-functions: `functions-framework --target=api` with Cloud Functions' variables.

Each server starts once per module (dev_appserver alone takes ~30 s to build its venv).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import shlex
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import require_service
from tests.platform.contract import CASES, Case, assert_answer
from tests.platform.platforms import (
    DEV_APPSERVER,
    PROJECT,
    WHEELHOUSE,
    container_env,
    dev_appserver_installed,
    load_yaml,
    parse_dockerfile,
    render_service_yaml,
    service_container,
)
from tests.servers import PROJECT_ROOT, VENV_BIN, base_env, free_port

pytestmark = pytest.mark.e2e

TARGETS = ["app-engine-gunicorn", "dev-appserver", "cloud-run-cmd", "cloud-functions"]
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
# Settings the deploy files leave at their defaults (tests/servers.py picks JSON logs for
# the other e2e tests; the platforms get `auto`, which is `gcp` there).
PLATFORM_DEFAULTS = {"LOG_FORMAT": "auto"}


@dataclass
class Target:
    """A running deployment target: where to send requests and where its logs go."""

    name: str
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    verify: str | bool = True  # the CA bundle for HTTPS targets
    extras: dict[str, Any] | None = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def request(self, case: Case, **headers: str) -> requests.Response:
        return requests.request(
            case.method,
            self.url + case.path,
            headers={**case.headers, **headers},
            data=case.body,
            timeout=30,
            verify=self.verify,
            allow_redirects=False,
        )


def _ok(url: str, verify: str | bool = True) -> bool:
    try:
        return requests.get(url, timeout=2, verify=verify, allow_redirects=False).status_code == 200
    except requests.RequestException:
        return False


@contextlib.contextmanager
def _running(
    name: str,
    command: list[str],
    env: dict[str, str],
    log_path: Path,
    ready: Callable[[], bool],
    timeout_s: float,
    cwd: Path = PROJECT_ROOT,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `command` in its own process group until `ready()`; stop the whole group after."""
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + timeout_s
        while not ready():
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}:\n{log_path.read_text()[-4000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} not ready after {timeout_s} s:\n{log_path.read_text()[-4000:]}")
            time.sleep(0.2)
        yield process
    finally:
        _stop_group(process)


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    # dev_appserver and functions-framework start children (gunicorn, its workers): the
    # group is this test's own, started above with start_new_session.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)


# --- how each platform starts the app -------------------------------------------------


def app_engine_env(port: int) -> dict[str, str]:
    """What App Engine standard gives the entrypoint: app.yaml's env_variables and its own."""
    app_yaml = load_yaml(PROJECT_ROOT / "app.yaml")
    return {
        **{name: str(value) for name, value in (app_yaml.get("env_variables") or {}).items()},
        "PORT": str(port),
        "GAE_ENV": "standard",
        "GAE_APPLICATION": f"s~{PROJECT}",
        "GAE_SERVICE": "default",
        "GAE_VERSION": "20261121t120000",
        "GAE_INSTANCE": "00c61b117c0f1a",
        "GAE_RUNTIME": app_yaml["runtime"],
        "GAE_MEMORY_MB": "1024",
        "GOOGLE_CLOUD_PROJECT": PROJECT,
        # Only to stay on loopback in tests; App Engine's instances bind all interfaces.
        "HOST": "127.0.0.1",
        **PLATFORM_DEFAULTS,
    }


def cloud_run_env(port: int, tmp: Path) -> dict[str, str]:
    """The Dockerfile's ENV, then service.yaml's container env, then Cloud Run's own."""
    dockerfile = parse_dockerfile(PROJECT_ROOT / "Dockerfile")
    service = load_yaml(render_service_yaml(tmp / "service.yaml"))
    return {
        **dockerfile.env,
        **container_env(service_container(service)),
        "PORT": str(port),
        "K_SERVICE": service["metadata"]["name"],
        "K_REVISION": f"{service['metadata']['name']}-00001-abc",
        "K_CONFIGURATION": service["metadata"]["name"],
        "HOST": "127.0.0.1",
        **PLATFORM_DEFAULTS,
    }


def cloud_functions_env(port: int) -> dict[str, str]:
    """What Cloud Functions (2nd gen) sets, plus the project the deploy command sets."""
    return {
        "PORT": str(port),
        "K_SERVICE": "model-serving-api",
        "K_REVISION": "model-serving-api-00001-xyz",
        "FUNCTION_TARGET": "api",
        "FUNCTION_SIGNATURE_TYPE": "http",
        "GOOGLE_CLOUD_PROJECT": PROJECT,
        "HOST": "127.0.0.1",
        **PLATFORM_DEFAULTS,
    }


def _port_pair() -> int:
    """A free port whose successor is free too (dev_appserver puts HTTPS on the next one)."""
    for _ in range(50):
        port = free_port()
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no two adjacent free ports")


def _self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(key), "-out", str(cert),
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


@contextlib.contextmanager
def start_target(name: str, tmp: Path) -> Iterator[Target]:
    """Start one target; yield it once it answers /readyz with 200."""
    port = free_port()
    log_path = tmp / f"{name}.log"
    if name == "app-engine-gunicorn":
        entrypoint = shlex.split(load_yaml(PROJECT_ROOT / "app.yaml")["entrypoint"])
        url = f"http://127.0.0.1:{port}"
        env = base_env(app_engine_env(port))
        with _running(name, entrypoint, env, log_path, lambda: _ok(url + "/readyz"), 60) as process:
            yield Target(name, url, process, log_path)
    elif name == "cloud-run-cmd":
        dockerfile = parse_dockerfile(PROJECT_ROOT / "Dockerfile")
        url = f"http://127.0.0.1:{port}"
        env = base_env(cloud_run_env(port, tmp))
        with _running(name, dockerfile.cmd, env, log_path, lambda: _ok(url + "/readyz"), 60) as process:
            yield Target(name, url, process, log_path)
    elif name == "cloud-functions":
        url = f"http://127.0.0.1:{port}"
        env = base_env(cloud_functions_env(port))
        command = [str(VENV_BIN / "functions-framework"), "--target=api"]
        with _running(name, command, env, log_path, lambda: _ok(url + "/readyz"), 60) as process:
            yield Target(name, url, process, log_path)
    elif name == "dev-appserver":
        with _dev_appserver(tmp, log_path) as target:
            yield target
    else:
        raise ValueError(name)


@contextlib.contextmanager
def _dev_appserver(tmp: Path, log_path: Path) -> Iterator[Target]:
    require_service(dev_appserver_installed(), "the Google Cloud SDK's dev_appserver.py is not installed")
    require_service(WHEELHOUSE.is_dir(), f"{WHEELHOUSE} is missing: run `make install`")
    cert, key = _self_signed_certificate(tmp)
    port = _port_pair()
    stage = tmp / "dev_appserver"
    command = [
        str(DEV_APPSERVER),
        f"--stage={stage}",
        "--host=127.0.0.1",
        f"--port={port}",
        "--admin_port=0",
        "--api_port=0",
        f"--ssl_certificate_path={cert}",
        f"--ssl_certificate_key_path={key}",
        f"--application={PROJECT}",
        f"--storage_path={tmp / 'dev_appserver_storage'}",
        "--automatic_restart=false",
        # Only to keep gunicorn on loopback; dev_appserver proxies to it.
        "--env_var=HOST=127.0.0.1",
    ]
    # pip inside dev_appserver installs requirements.txt from the wheelhouse, offline.
    env = base_env({"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(WHEELHOUSE)})
    https_port = port + 1
    url = f"https://127.0.0.1:{https_port}"
    with _running("dev_appserver", command, env, log_path, lambda: _ok(url + "/readyz", str(cert)), 240) as process:
        yield Target(
            "dev-appserver",
            url,
            process,
            log_path,
            verify=str(cert),
            extras={"http_url": f"http://127.0.0.1:{port}", "app_dir": stage / "app"},
        )


@pytest.fixture(scope="module")
def dev_appserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """One dev_appserver for the module: it is slow to start (it builds a virtualenv)."""
    with start_target("dev-appserver", tmp_path_factory.mktemp("dev-appserver")) as running:
        yield running


@pytest.fixture(scope="module", params=TARGETS)
def target(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    if request.param == "dev-appserver":
        yield request.getfixturevalue("dev_appserver")
        return
    with start_target(request.param, tmp_path_factory.mktemp(request.param)) as running:
        yield running


# --- the contract, on every target ----------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_contract(target: Target, case: Case) -> None:
    case.skip_if_absent()

    response = target.request(case)

    assert_answer(case, response.status_code, response.headers, response.content)


def _log_entries(target: Target, request_id: str, timeout_s: float = 10.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while True:
        entries = []
        for line in target.log().splitlines():
            start = line.find("{")
            if start < 0:
                continue
            with contextlib.suppress(ValueError):
                entry = json.loads(line[start:])
                if isinstance(entry, dict) and entry.get("request_id") == request_id:
                    entries.append(entry)
        if entries or time.monotonic() > deadline:
            return entries
        time.sleep(0.2)


def test_request_log_carries_trace_and_http_request(target: Target) -> None:
    # Behind Google's front end the platform logs every request itself, so the app writes
    # its own line only for refusals and errors (REQUEST_LOG_SAMPLE_RATE=auto, issue 24):
    # a 200 gets none (but under dev_appserver, a local run); the 400 after it gets one,
    # correlated with the trace.
    headers = {
        "traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01",
        "User-Agent": "contract-test/1.0",
        # What Google's front end adds after terminating TLS (dev_appserver terminates
        # TLS too but does not add it: it passes the header on as the front end would).
        "X-Forwarded-Proto": "https",
    }
    valid_id, invalid_id = (f"e2e-{uuid.uuid4().hex[:12]}" for _ in range(2))

    served = target.request(CASES[2], **headers, **{"X-Request-Id": valid_id})  # tutorial-valid
    refused = target.request(CASES[1], **headers, **{"X-Request-Id": invalid_id})  # tutorial-invalid
    entries = _log_entries(target, invalid_id)

    assert served.status_code == 200
    assert served.headers["X-Request-Id"] == valid_id
    assert refused.status_code == 400
    (access,) = [e for e in entries if e.get("httpRequest")]
    assert access["severity"] == "INFO"
    # Written by google-cloud-logging's StructuredLogHandler (LOG_FORMAT=auto on Google Cloud).
    assert access["logging.googleapis.com/labels"] == {"python_logger": "serving.request"}
    assert access["logging.googleapis.com/sourceLocation"]["function"] == "_finish"
    assert access["logging.googleapis.com/trace"] == f"projects/{PROJECT}/traces/{TRACE_ID}"
    assert access["logging.googleapis.com/spanId"] == "00f067aa0ba902b7"
    assert access["model"] == "XXXModel"
    http = access["httpRequest"]
    assert http["requestMethod"] == "POST"
    assert http["requestUrl"].startswith("https://")
    assert http["requestUrl"].endswith("/v1/XXXModel")
    assert http["status"] == 400
    assert http["userAgent"] == "contract-test/1.0"
    assert http["responseSize"] == str(len(refused.content))
    assert http["latency"].endswith("s")
    served_lines = [e for e in _log_entries(target, valid_id, timeout_s=0) if e.get("httpRequest")]
    # dev_appserver is a local run (no Google request log in front): the app logs every request there.
    assert len(served_lines) == (1 if target.name == "dev-appserver" else 0)


# --- what only one platform does ------------------------------------------------------


def test_dev_appserver_redirects_plain_http_to_https(dev_appserver: Target) -> None:
    server = dev_appserver
    assert server.extras is not None

    plain = requests.get(server.extras["http_url"] + "/v1/models?x=1", timeout=10, allow_redirects=False)

    # `secure: always` (dev_appserver answers 302 where production answers 301).
    assert plain.status_code == 302
    assert plain.headers["Location"] == server.url + "/v1/models?x=1"


def test_dev_appserver_serves_widget_files_from_the_static_handler(dev_appserver: Target) -> None:
    server = dev_appserver
    assert server.extras is not None
    # A file placed where the widget's files go (web/static/, as uploaded).
    static_dir = server.extras["app_dir"] / "web" / "static"
    static_dir.mkdir(parents=True, exist_ok=True)
    (static_dir / "probe.js").write_text("export const probe = 1;\n")

    asset = requests.get(server.url + "/static/probe.js", timeout=10, verify=server.verify)

    # app.yaml's static handler serves web/static without the app (no request id).
    assert asset.status_code == 200
    assert asset.text == "export const probe = 1;\n"
    assert asset.headers["Access-Control-Allow-Origin"] == "*"
    assert asset.headers["X-Content-Type-Options"] == "nosniff"
    assert "X-Request-Id" not in asset.headers


def test_cloud_run_cmd_hands_sigterm_to_gunicorn(tmp_path: Path) -> None:
    with start_target("cloud-run-cmd", tmp_path) as server:
        # Cloud Run signals the container's PID 1: the process the CMD started.
        os.kill(server.process.pid, signal.SIGTERM)
        code = server.process.wait(20)
        log = server.log()

    # The shell exec'd into gunicorn, so gunicorn itself got the signal and shut down
    # cleanly; a shell left in between would have died of it (-15) and left gunicorn.
    assert code == 0, log[-3000:]
    assert "Handling signal: term" in log


def test_dev_appserver_runs_the_app_on_this_python_and_itself_on_an_older_one(dev_appserver: Target) -> None:
    # As on App Engine: the app on the suite's Python (3.13 in `make test`'s 3.13 lane, the
    # runtime app.yaml names), the SDK's tool on a Python that still has `cgi`.
    log = dev_appserver.log()
    detected = re.search(r'Detected python version "b?\'?Python ([\d.]+)', log)
    assert detected is not None, log[:2000]
    assert detected.group(1) == platform.python_version()
    tool_python = shlex.split(log.splitlines()[0].removeprefix("+ "))[0]
    tool_version = subprocess.run(
        [tool_python, "-c", "import sys; print(sys.version_info[:2] < (3, 13))"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    assert tool_version.stdout.strip() == "True"
