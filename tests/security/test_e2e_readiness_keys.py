"""With API keys on, readiness says which models are not ready, and why only to a valid key (issue 22).

A reason may name a bucket or a path (`artifacts gs://secret-internal-bucket/...: ...`);
`/readyz` and `/_ah/warmup` need no key (the platforms' probes send none), so without a
valid key they answer each model's state and the log keeps the reason.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import FIXTURE_HANDLERS
from tests.servers import free_port

pytestmark = pytest.mark.e2e

INTERNAL_URI = "gs://secret-internal-bucket/models/v7/"
KEYS = "ops:ops-secret-0123456789,plain-only:plain-secret-0123456789:Plain"


def _get(url: str, headers: dict[str, str]) -> tuple[int, Any]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


CALLERS = [
    pytest.param({}, False, id="no-key"),
    pytest.param({"X-API-Key": "wrong-secret-0123456789"}, False, id="invalid-key"),
    pytest.param({"X-API-Key": "plain-secret-0123456789"}, False, id="key-scoped-to-another-model"),
    pytest.param({"Authorization": "Bearer ops-secret-0123456789"}, True, id="valid-key"),
]


@pytest.mark.parametrize("path", ["/readyz", "/_ah/warmup"])
@pytest.mark.parametrize(("headers", "sees_reason"), CALLERS)
def test_readiness_hides_reasons_from_callers_without_a_valid_key(
    start_gunicorn: Callable[..., Any], path: str, headers: dict[str, str], sees_reason: bool
) -> None:
    env = {
        "HANDLERS_DIR": str(FIXTURE_HANDLERS / "artifacts"),
        "MODEL_ARTIFACTS": f"Files={INTERNAL_URI}",
        "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{free_port()}",  # nothing listens: the model fails
        "ARTIFACTS_TIMEOUT_S": "1",
        "API_KEYS": KEYS,
        "GUNICORN_WORKERS": "1",
    }
    with start_gunicorn(env, ready_path="/healthz") as server:
        # Files loads from Cloud Storage in the background: wait until it has failed.
        deadline = time.monotonic() + 60
        while _get(server.url + "/readyz", {})[1]["models"]["Files"]["status"] == "loading":
            assert time.monotonic() < deadline, "Files still loading"
            time.sleep(0.2)
        status, body = _get(server.url + path, headers)
        log = server.log()

    assert status == 503
    assert body["models"]["Plain"] == {"status": "ready"}
    assert body["models"]["Files"]["status"] == "failed"
    assert ("reason" in body["models"]["Files"]) is sees_reason
    assert ("secret-internal-bucket" in json.dumps(body)) is sees_reason
    assert "secret-internal-bucket" in log  # the operator still finds out why
