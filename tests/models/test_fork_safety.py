"""Models loaded and used before a fork keep working in the children.

gunicorn with preload_app loads the app in its master and forks workers; a warm-up
request in the master means the model has run before the fork. Each case runs in a
fresh process, so a hang is caught by an alarm in the child, not by a stuck test run.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.models.conftest import HANDLER_MODULES, handler, require_handler_packages

PROJECT_ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import json, os, signal, sys, warnings
warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads: what is tested
module = __import__(sys.argv[1], fromlist=["setup"])
# A handler with ARTIFACTS takes its directory (relative to the project root, the cwd).
from pathlib import Path
model = module.setup(*([Path(module.ARTIFACTS)] if getattr(module, "ARTIFACTS", None) else []))
examples = module.INPUT_SCHEMA["examples"]
# What the core hands predict_batch: each payload through the handler's `admit` and `prepare`, if any.
for stage in (getattr(module, "admit", None), getattr(module, "prepare", None)):
    if stage is not None:
        examples = [stage(model, example) for example in examples]
expected = module.predict_batch(model, examples * 4) if sys.argv[2] == "warm" else None

def close(a, b):
    # The child may run torch on fewer threads, which can move float32 sums in the last bits.
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b))
    if isinstance(a, float):
        return abs(a - b) <= 1e-5
    return a == b

children = []
for _ in range(2):
    pid = os.fork()
    if pid == 0:
        signal.alarm(90)  # a deadlocked child dies with SIGALRM instead of hanging the test
        got = module.predict_batch(model, examples * 4)
        os._exit(0 if expected is None or close(got, expected) else 3)
    children.append(pid)
print(json.dumps([os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children]))
"""


@pytest.mark.e2e
@pytest.mark.parametrize("parent", ["warm", "loaded-only"])
@pytest.mark.parametrize("module_name", HANDLER_MODULES)
def test_children_forked_from_a_parent_with_the_model_still_predict(module_name: str, parent: str) -> None:
    # "warm": the parent predicted before forking (a warm-up in gunicorn's master).
    require_handler_packages(handler(module_name))
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, module_name, parent],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    # 0: same results as the parent; 3: different results; -14: hung until the alarm.
    assert result.stdout.strip().splitlines()[-1] == "[0, 0]", result.stderr[-2000:]
