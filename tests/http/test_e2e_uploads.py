"""End to end: files and form fields from real curl and requests, against the real gunicorn.

The commands a new user types (`curl -F image=@3.png`, `--data-binary` with an image
type) answer the digit; form fields reach Iris and XXXModel; a file can be submitted as
a job; and the spool directory is empty, with nothing held open in it, afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.servers import PROJECT_ROOT, ServerProcess, free_port, gunicorn_command, running_server

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed"),
]

SAMPLES = PROJECT_ROOT / "models" / "digits" / "samples"


@pytest.fixture(scope="module")
def spool_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(tmp_path_factory.mktemp("spool"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, spool_dir: Path) -> Iterator[ServerProcess]:
    port = free_port()
    base = Path(tmp_path_factory.mktemp("uploads"))
    env = {
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "GUNICORN_WORKERS": "2",
        "JOBS_DATA_DIR": str(base / "jobs"),
        # The 1250-byte 3.png goes to disk: the spool's clean-up runs for real.
        "UPLOAD_SPOOL_BYTES": "1024",
        "UPLOAD_SPOOL_DIR": str(spool_dir),
    }
    with running_server(gunicorn_command(), port=port, log_path=base / "gunicorn.log", env=env) as process:
        yield process


def curl(*args: str) -> tuple[int, dict[str, Any]]:
    """Run curl; return (status, JSON body)."""
    result = subprocess.run(
        ["curl", "--silent", "--show-error", "--write-out", "\n%{http_code}", *args],
        capture_output=True,
        text=True,
        check=True,
        cwd=PROJECT_ROOT,
        timeout=30,
    )
    body, status = result.stdout.rsplit("\n", 1)
    return int(status), json.loads(body)


def test_curl_form_file_answers_the_digit(server: ServerProcess) -> None:
    status, body = curl("-F", "image=@models/digits/samples/3.png", f"{server.url}/v1/Digits")

    assert status == 200, body
    assert body["result"]["digit"] == 3


def test_curl_raw_png_body_answers_the_digit(server: ServerProcess) -> None:
    status, body = curl(
        "-H", "Content-Type: image/png", "--data-binary", "@models/digits/samples/3.png", f"{server.url}/v1/Digits"
    )

    assert status == 200, body
    assert body["result"]["digit"] == 3


def test_requests_files_answers_the_digit(server: ServerProcess) -> None:
    with (SAMPLES / "7.png").open("rb") as image:
        response = requests.post(f"{server.url}/v1/Digits", files={"image": image}, timeout=30)

    assert response.status_code == 200, response.text
    assert response.json()["result"]["digit"] == 7


def test_curl_form_fields_for_iris_and_xxxmodel(server: ServerProcess) -> None:
    iris = curl(
        *("-F", "sepal_length=5.1", "-F", "sepal_width=3.5", "-F", "petal_length=1.4", "-F", "petal_width=0.2"),
        f"{server.url}/v1/Iris",
    )
    greeting = curl("-F", "name=Leo", f"{server.url}/v1/XXXModel")

    assert iris[0] == 200, iris
    assert iris[1]["result"]["label"] == "setosa"
    assert greeting == (200, {"result": "Hello, Leo!"})


def test_curl_form_errors_name_the_field(server: ServerProcess) -> None:
    file_for_text = curl("-F", "name=@models/digits/samples/3.png", f"{server.url}/v1/XXXModel")
    unknown = curl("-F", "image=@models/digits/samples/3.png", "-F", "colour=red", f"{server.url}/v1/Digits")
    not_a_number = curl(
        *("-F", "sepal_length=long", "-F", "sepal_width=3.5", "-F", "petal_length=1.4", "-F", "petal_width=0.2"),
        f"{server.url}/v1/Iris",
    )

    assert file_for_text[0] == 400
    assert file_for_text[1]["code"] == "unexpected_file"
    assert file_for_text[1]["path"] == "$.name"
    assert unknown[0] == 400
    assert unknown[1]["path"] == "$.colour"
    assert not_a_number[0] == 400
    assert not_a_number[1]["message"] == "'long' is not of type 'number'"


def test_a_file_submitted_as_a_job(server: ServerProcess) -> None:
    status, accepted = curl(
        "-H", "Prefer: respond-async", "-F", "image=@models/digits/samples/7.png", f"{server.url}/v1/Digits"
    )
    assert status == 202, accepted

    deadline = time.monotonic() + 30
    job = requests.get(f"{server.url}/v1/jobs/{accepted['job_id']}", timeout=5).json()
    while job["status"] in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(0.1)
        job = requests.get(f"{server.url}/v1/jobs/{accepted['job_id']}", timeout=5).json()

    assert job["status"] == "succeeded", job
    assert job["result"]["digit"] == 7


def _worker_pids(server: ServerProcess) -> list[int]:
    children = Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children")
    return [int(pid) for pid in children.read_text().split()]


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs Linux's /proc to see open files")
def test_nothing_is_left_in_the_spool_directory(server: ServerProcess, spool_dir: Path) -> None:
    for _ in range(4):  # reach both workers, a good body and a cut-short one each
        curl("-F", "image=@models/digits/samples/3.png", f"{server.url}/v1/Digits")
        cut = (SAMPLES / "3.png").read_bytes()
        requests.post(
            f"{server.url}/v1/Digits",
            data=b'--b\r\nContent-Disposition: form-data; name="image"; filename="3.png"\r\n\r\n' + cut,
            headers={"Content-Type": "multipart/form-data; boundary=b"},
            timeout=10,
        )

    held = []
    for pid in _worker_pids(server):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith(str(spool_dir)):
                held.append(target)
    assert held == []
    assert list(spool_dir.iterdir()) == []
    assert "Traceback" not in server.log()
