"""ONNX Runtime and the life of a gunicorn process: before the fork, and at a worker's exit.

Two things used to kill every worker on a signal when gunicorn stopped (issue 22):

- ONNX Runtime 1.29 and later start a telemetry thread (Microsoft's 1DS client, which
  uploads usage events) when `onnxruntime` is imported. gunicorn imports it in the master
  (preload_app) and forks; the thread does not exist in a worker, and at the worker's exit
  C++ static destructors stop it anyway: `std::system_error: Invalid argument`, SIGABRT,
  or a hang in `pthread_cond_destroy`. ONNX Runtime reads `ORT_DISABLE_TELEMETRY` once,
  when it is imported, and its run-time switch (`disable_telemetry_events`) leaves the
  thread running; so this module sets the variable when it is imported, which the app
  factory does before any handler is loaded. A server sends nothing to third parties
  either way.
- A worker builds its sessions in background threads, and a prediction abandoned by its
  time budget keeps running in a daemon thread. When the interpreter finalizes, such a
  thread that comes back from ONNX Runtime's C++ code is ended by `pthread_exit`, whose
  unwinding through the binding's frames calls `std::terminate`: SIGABRT. So gunicorn's
  `worker_exit` hook calls `close_onnx_models`, which waits for every call in ONNX
  Runtime to return and then destroys this process's sessions (`OnnxModel.close`, in
  the kit), before finalization.

Before a fork, `trim_heap_before_fork` hands the memory of the sessions the master let
go of (the kit counts them: `sessions_released`) back to the OS, so workers do not
inherit it. The server's part lives here, not in `serving.kit`: model code imports the
kit alone, and these are decisions about the serving process.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import time

from serving.kit.onnx import live_onnx_models, sessions_released

# Before `import onnxruntime` anywhere in this process (see the module docstring). An
# explicit setting wins; enabling telemetry under gunicorn crashes every worker at exit.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

# Imported before the variable was set: the telemetry thread exists in this process.
telemetry_thread_started = "onnxruntime.capi._pybind_state" in sys.modules


# How many released sessions the last trim covered.
_trimmed_after = 0


def close_onnx_models(timeout_s: float) -> list[str]:
    """Wait up to `timeout_s` for ONNX Runtime calls to return, destroy the sessions; the names still busy.

    For gunicorn's `worker_exit` hook: after it, no thread of this process is inside ONNX
    Runtime and no session of it is alive, so the interpreter can finalize. A model still
    running a call after the timeout (a graph that never returns) is named, so the hook
    can log it; its session is left alone.
    """
    deadline = time.monotonic() + max(0.0, timeout_s)
    busy: list[str] = []
    for model in live_onnx_models():
        if not model.close(max(0.0, deadline - time.monotonic())):
            busy.append(model.name)
    return busy


def trim_heap_before_fork() -> bool:
    """Hand the heap that released sessions freed back to the OS; True if it tried.

    Registered before any `OnnxModel` exists, so it runs after their release hooks
    (`os.register_at_fork` runs `before` hooks last-registered first). glibc keeps freed
    memory in its arenas: without `malloc_trim` the master would carry the sessions'
    tens of MB into every worker's page tables (measured: about 70 MB less in the
    master with every example model). Elsewhere than glibc it does nothing.
    """
    global _trimmed_after
    released = sessions_released()
    if released == _trimmed_after:
        return False
    _trimmed_after = released
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)
    return True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=trim_heap_before_fork)
