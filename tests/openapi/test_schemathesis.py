"""Property-based fuzzing: schemathesis against the app's own /openapi.json, on a real gunicorn.

Every operation in the document gets its examples, schemathesis's coverage cases (every
boundary and every kind of invalid value the schema implies), up to 200 generated cases,
and stateful sequences (submit a job, read it, cancel it). Every check is on: no 5xx, every status and body and
content type as documented, invalid input refused with a 4xx, valid input accepted,
405 with the right `Allow` for undocumented methods. With API keys on, the
`ignored_auth` check also proves that no protected operation answers without a key.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.servers import VENV_BIN

# The schemathesis run has its own 600 s limit (below); the project-wide 300 s would cut it
# short now that the document holds about fifty operations.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

CONFIG = Path(__file__).parent / "schemathesis.toml"
KEY = "fuzz-secret-0123456789abcdef"


# Statuses schemathesis accepts for schema-valid input by default.
_POSITIVE = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]


def _opaque(schema: Any) -> bool:
    """True when a JSON Schema declares encoded content (an image) that it cannot validate."""
    if isinstance(schema, dict):
        if "contentEncoding" in schema or "contentMediaType" in schema:
            return True
        return any(_opaque(value) for value in schema.values())
    if isinstance(schema, list):
        return any(_opaque(value) for value in schema)
    return False


def model_config(models: list[dict[str, Any]]) -> str:
    """One [[operations]] entry per model: which answers to schema-valid input are right.

    - an unavailable model (its packages are not installed here) answers 503 by design;
    - a model that may run as a job documents Idempotency-Key, and reusing a key with a
      different body is a 422 by design;
    - a model whose input is encoded content (an image) answers 400 when the content
      does not decode, which no JSON Schema can rule out.
    """
    entries = []
    for model in models:
        positive = list(_POSITIVE)
        server_error = ["2xx", "3xx", "4xx"]
        if model["status"] == "unavailable":
            server_error.append("503")
        if model["async"] != "never":
            positive.append("422")
        if _opaque(model["input_schema"]):
            positive.append("400")
        entries.append(
            "\n".join(
                [
                    "[[operations]]",
                    f"include-tag = {json.dumps(model['name'])}",
                    f"checks.not_a_server_error.expected-statuses = {json.dumps(server_error)}",
                    f"checks.positive_data_acceptance.expected-statuses = {json.dumps(positive)}",
                ]
            )
        )
    return "\n\n".join(entries)


def _schemathesis(url: str, tmp_path: Path, *args: str, key: str | None = None) -> subprocess.CompletedProcess[str]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    models = requests.get(f"{url}/v1/models", headers=headers, timeout=30).json()["models"]
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG.read_text() + "\n" + model_config(models) + "\n")
    auth = ["-H", f"Authorization: Bearer {key}"] if key else []
    command = [
        str(VENV_BIN / "st"),
        "--config-file",
        str(config),
        "run",
        f"{url}/openapi.json",
        "--checks",
        "all",
        # use_after_free expects a 404 after DELETE; DELETE /v1/jobs/{job_id} cancels the
        # job instead, which stays readable with status "canceled" until its retention ends.
        "--exclude-checks",
        "use_after_free",
        # One worker: on Python 3.11 hypothesis's concurrent ast.parse calls can fail
        # with "AST constructor recursion depth mismatch" (a CPython bug fixed in 3.12).
        "--workers",
        "1",
        "--seed",
        "20261121",  # fixed, so a CI failure reproduces locally with the same cases
        "--generation-database",
        "none",
        "--request-timeout",
        "30",
        # A kept-alive connection that gunicorn closes after its keepalive (5 s) just as the
        # client reuses it fails before reaching the app; clients retry those, and so does this.
        "--request-retries",
        "2",
        "--no-color",
        "--report",
        "junit",
        "--report-dir",
        str(tmp_path),
        *auth,
        *args,
    ]
    # Run in tmp_path: schemathesis keeps a crash cache in its working directory.
    return subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)


def _assert_clean(result: subprocess.CompletedProcess[str], server: Any) -> None:
    report = result.stdout[-8000:] + result.stderr[-2000:]
    assert result.returncode == 0, report
    assert "Failures:" not in result.stdout, report
    selected = re.search(r"Selected: (\d+)/(\d+)", result.stdout)
    tested = re.search(r"Tested: (\d+)", result.stdout)
    assert selected is not None, report
    assert tested is not None, report
    assert selected.group(1) == selected.group(2) == tested.group(1), report  # every operation ran
    assert int(tested.group(1)) >= 9
    assert "Traceback" not in server.log()


def test_every_operation_conforms_under_fuzzing(start_gunicorn: Any, tmp_path: Path) -> None:
    with start_gunicorn({"JOBS_DATA_DIR": str(tmp_path / "jobs")}) as server:
        result = _schemathesis(server.url, tmp_path, "--max-examples", "200")
        _assert_clean(result, server)

    assert "generated" in result.stdout


def test_protected_operations_refuse_requests_without_a_key(start_gunicorn: Any, tmp_path: Path) -> None:
    env = {"API_KEYS": f"fuzz:{KEY}", "RATE_LIMITS": "", "JOBS_DATA_DIR": str(tmp_path / "jobs")}
    with start_gunicorn(env) as server:
        result = _schemathesis(server.url, tmp_path, "--max-examples", "60", key=KEY)
        _assert_clean(result, server)

    assert "generated" in result.stdout


def _tested_operations(tmp_path: Path) -> set[str]:
    """The operations (`METHOD /path`) the junit report of the run names."""
    names: set[str] = set()
    for report in tmp_path.glob("junit*.xml"):
        names.update(re.findall(r'<testcase[^>]* name="([A-Z]+ /[^"]*)"', report.read_text()))
    return names


def test_the_protocol_routes_conform_under_fuzzing(start_gunicorn: Any, tmp_path: Path) -> None:
    """The OpenAI and Open Inference Protocol operations on their own, with more examples each:
    hostile tensors, shapes and texts (issue 22) are what these routes get."""
    with start_gunicorn({"JOBS_DATA_DIR": str(tmp_path / "jobs")}) as server:
        result = _schemathesis(
            server.url,
            tmp_path,
            "--include-tag",
            "openai",
            "--include-tag",
            "open-inference",
            "--max-examples",
            "50",  # 100 took 4 min alone here, and over the run's 600 s on a loaded machine
        )
        report = result.stdout[-8000:] + result.stderr[-2000:]
        assert result.returncode == 0, report
        assert "Failures:" not in result.stdout, report
        assert "Traceback" not in server.log()
        assert '"status":500' not in server.log()

    tested = _tested_operations(tmp_path)
    assert "POST /v1/embeddings" in tested, tested
    assert any(re.fullmatch(r"POST /v2/models/\w+/infer", name) for name in tested), tested
    assert any(re.fullmatch(r"GET /v2/models/\w+", name) for name in tested), tested
    assert "GET /v2/health/ready" in tested, tested
