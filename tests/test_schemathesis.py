"""Property-based fuzzing: schemathesis against the app's own /openapi.json, on a real gunicorn.

Every operation in the document gets its examples, schemathesis's coverage cases (every
boundary and every kind of invalid value the schema implies), a few hundred generated
cases, and stateful sequences. Every check is on: no 5xx, every status and body and
content type as documented, invalid input refused with a 4xx, valid input accepted,
405 with the right `Allow` for undocumented methods. With API keys on, the
`ignored_auth` check also proves that no protected operation answers without a key.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.servers import PROJECT_ROOT, VENV_BIN

pytestmark = pytest.mark.e2e

CONFIG = Path(__file__).parent / "schemathesis.toml"
KEY = "fuzz-secret-0123456789abcdef"


def _schemathesis(url: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [
        str(VENV_BIN / "st"),
        "--config-file",
        str(CONFIG),
        "run",
        f"{url}/openapi.json",
        "--checks",
        "all",
        "--workers",
        "2",
        "--seed",
        "20261121",  # fixed, so a CI failure reproduces locally with the same cases
        "--generation-database",
        "none",
        "--request-timeout",
        "30",
        "--no-color",
        "--report",
        "junit",
        "--report-dir",
        str(tmp_path),
        *args,
    ]
    return subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600)


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
    with start_gunicorn() as server:
        result = _schemathesis(server.url, tmp_path, "--max-examples", "300")
        _assert_clean(result, server)

    assert "generated" in result.stdout


def test_protected_operations_refuse_requests_without_a_key(start_gunicorn: Any, tmp_path: Path) -> None:
    with start_gunicorn({"API_KEYS": f"fuzz:{KEY}", "RATE_LIMITS": ""}) as server:
        result = _schemathesis(server.url, tmp_path, "--max-examples", "60", "-H", f"Authorization: Bearer {KEY}")
        _assert_clean(result, server)

    assert "generated" in result.stdout
