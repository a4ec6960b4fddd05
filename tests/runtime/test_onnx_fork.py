"""A session created before a fork never hangs or crashes the forked children.

gunicorn's preload_app loads the models in the master, then forks the workers. ONNX
Runtime's thread pools do not survive a fork: with the pinned version, a child that runs
a parent's session with an inter-op pool hangs, and one that destroys a parent's session
with an intra-op pool dies in `pthread_join` (the control case below shows both).
`OnnxModel` never lets a session cross a fork (serving/kit/onnx.py says how). Each
case runs in a fresh process whose children die by SIGALRM instead of hanging the test.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.runtime.onnx_graphs import WIDTH, expected_y, two_branch_matmul
from tests.servers import PROJECT_ROOT

SCRIPT = """
import gc, json, os, signal, sys, threading, warnings
import numpy as np
warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads: what is tested
from tests.runtime.onnx_graphs import expected_y, two_branch_matmul, WIDTH

kind = sys.argv[1]
x = np.random.default_rng(1).standard_normal((64, WIDTH)).astype(np.float32)
if kind == "OnnxModel":
    from serving.kit.onnx import OnnxModel, OnnxRuntimeOptions, configure_onnx_runtime
    configure_onnx_runtime(OnnxRuntimeOptions(intra_op_threads=4, inter_op_threads=2, spin_wait=True))
    model = OnnxModel(two_branch_matmul(), name="two_branch_matmul")
    run = lambda: model.run({"X": x})["Y"]
else:  # the control: what a handler that keeps a plain session would do
    import onnxruntime
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 4, 2
    options.execution_mode = onnxruntime.ExecutionMode.ORT_PARALLEL
    model = onnxruntime.InferenceSession(two_branch_matmul(), options, providers=["CPUExecutionProvider"])
    run = lambda: model.run(["Y"], {"X": x})[0]
ok = lambda y: bool(np.allclose(y, expected_y(x), rtol=1e-4, atol=1e-4))
assert ok(run())  # the parent ran the model before forking, as a warm-up in the master would

# Parent threads keep running the model while it forks: pool threads are mid-work then.
stop = threading.Event()
def keep_running():
    while not stop.is_set():
        run()
busy = [threading.Thread(target=keep_running) for _ in range(2)]
for thread in busy:
    thread.start()

codes = []
for _ in range(int(sys.argv[2])):
    pid = os.fork()
    if pid == 0:
        signal.alarm(20)
        results = []
        threads = [threading.Thread(target=lambda: results.append(ok(run()))) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        del model, run  # a session destroyed in the child must not take the child down
        gc.collect()
        # A normal exit, not os._exit: the crash of issue 22 came in the exit handlers and
        # C++ static destructors that os._exit skips.
        sys.exit(0 if results == [True] * 3 else 3)
    codes.append(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
stop.set()
for thread in busy:
    thread.join()
assert ok(run())  # and the parent still serves
print(json.dumps(codes))
"""


def _child_exit_codes(kind: str, children: int) -> list[int]:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, kind, str(children)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    codes: list[int] = json.loads(result.stdout.strip().splitlines()[-1])
    return codes


def test_children_of_a_process_that_ran_an_onnx_model_predict_and_exit_cleanly() -> None:
    # 0: the right results and a clean exit; 3: wrong results; -14: hung (SIGALRM);
    # -11: crashed; -6: aborted (ONNX Runtime's telemetry thread, issue 22).
    assert _child_exit_codes("OnnxModel", children=3) == [0, 0, 0]


def test_control_a_plain_session_across_a_fork_hangs_or_crashes_the_child() -> None:
    # Shows that the test above would catch a session that crosses the fork: with the
    # pinned onnxruntime the child of the plain session hangs or crashes.
    assert _child_exit_codes("raw session", children=1) != [0]


HANDLER = '''
"""Two matrix products of a fixed graph, and the worker that computed them."""
import os
from pathlib import Path

import numpy as np

from serving.kit import OnnxModel

NAME = "TwoBranch"
INPUT_SCHEMA = {"type": "object", "properties": {"x": {"type": "array", "items": {"type": "number"}}}}


def setup():
    model = OnnxModel(Path(__file__).with_name("two_branch.onnx"))
    model.run({"X": np.ones((4, %(width)d), dtype=np.float32)})  # a warm-up, in the master
    return model


def predict(model, payload):
    y = model.run({"X": np.asarray([payload["x"]], dtype=np.float32)})["Y"]
    return {"y": [float(v) for v in y[0]], "pid": os.getpid()}
'''


@pytest.mark.e2e
def test_gunicorn_workers_serve_a_model_their_master_loaded_and_ran(
    tmp_path: Path, start_gunicorn: Callable[..., Any]
) -> None:
    handlers = tmp_path / "handlers"
    handlers.mkdir()
    (handlers / "two_branch.py").write_text(HANDLER % {"width": WIDTH})
    (handlers / "two_branch.onnx").write_bytes(two_branch_matmul())
    x = np.random.default_rng(2).standard_normal(WIDTH).astype(np.float32)
    env = {
        "HANDLERS_DIR": str(handlers),
        "MODEL_LOADING": "eager",
        "ONNX_INTRA_OP_THREADS": "2",
        "ONNX_INTER_OP_THREADS": "2",
        "BATCHING": "false",
    }
    with start_gunicorn(env) as server:
        pids: set[int] = set()
        deadline = time.monotonic() + 60
        while len(pids) < 2 and time.monotonic() < deadline:
            # A new connection each time: gunicorn's workers take turns accepting them.
            request = urllib.request.Request(
                server.url + "/v1/TwoBranch",
                data=json.dumps({"x": x.tolist()}).encode(),
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=20) as response:
                body = json.load(response)["result"]
            np.testing.assert_allclose(body["y"], expected_y(x[None, :])[0], rtol=1e-4, atol=1e-4)
            pids.add(body["pid"])
        status = server.stop()
    assert len(pids) == 2, "both workers answered"
    # And both stop without a signal (issue 22: every worker aborted at exit).
    assert status == 0
    assert not re.search(r"was sent SIG|terminate called|Segmentation fault", server.log()), server.log()[-3000:]
