"""Serving a model from any framework through ONNX Runtime: `OnnxModel(path).run(feeds)`.

Part of `serving.kit`, the public surface for model authors (import `OnnxModel` from there).

A handler's `setup()` returns an `OnnxModel`; `predict_batch` turns payloads into arrays
and calls `run`. Converters exist for scikit-learn (skl2onnx), PyTorch (`torch.onnx`),
TensorFlow/Keras (tf2onnx) and XGBoost/LightGBM (onnxmltools); see docs/onnx.md.

Threads: ONNX Runtime's intra-op pool is sized per process from `Settings`
(`ONNX_INTRA_OP_THREADS`, `ONNX_INTER_OP_THREADS`, `ONNX_SPIN_WAIT`), which the app
factory turns into `OnnxRuntimeOptions` (serving/runtime/onnx.py) and hands over once
with `configure_onnx_runtime`; handlers read no environment.
The default shares the usable cores among gunicorn's workers (2 cores, 2 workers: one
thread each), so the workers' pools never oversubscribe the machine.

Fork safety (gunicorn's preload_app loads the models in the master, then forks): ONNX
Runtime's thread pools do not survive a fork, and a session copied into a child can
deadlock on a lock that a pool thread of the parent held at the fork, or when the child
destroys it and joins threads it does not have. So a session never crosses a fork:
- the model's bytes are read once (before the fork, shared copy-on-write);
- each process creates its own session from them (a forked child starts building it
  in a background thread at once; otherwise on first use or `warm()`), and a session
  is used only by the process that created it;
- just before a fork the parent lets go of its session (its pools are joined there,
  where their threads exist), so the master holds no session while workers serve;
- a session a child inherits anyway (a fork the hook did not see, or one a parent
  thread was running at the fork) is never used and never destroyed in the child;
- before a process exits, `close()` waits for its calls into ONNX Runtime (a run, a
  session being built) and destroys its session: a thread that comes back from ONNX
  Runtime while the interpreter finalizes aborts the process. The server closes every
  live model (`live_onnx_models`) in gunicorn's `worker_exit` hook and, before a fork,
  hands the heap of released sessions back to the OS (`sessions_released`); both live in
  serving/runtime/onnx_process.py, which also says why ONNX Runtime's telemetry is off.
tests/runtime/test_onnx_fork.py proves it with real forks and a real gunicorn.

onnxruntime is imported on first use, not with this module: the app factory imports
this module to configure it even when no handler serves an ONNX model.
"""

from __future__ import annotations

import contextlib
import os
import threading
import weakref
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from serving.kit.forking import release_before_fork, reset_in_forked_child

# ONNX element types (as ONNX Runtime spells them in `tensor(...)`) and their numpy dtypes.
_DTYPES: dict[str, np.dtype[Any]] = {
    "float": np.dtype(np.float32),
    "double": np.dtype(np.float64),
    "float16": np.dtype(np.float16),
    "int8": np.dtype(np.int8),
    "int16": np.dtype(np.int16),
    "int32": np.dtype(np.int32),
    "int64": np.dtype(np.int64),
    "uint8": np.dtype(np.uint8),
    "uint16": np.dtype(np.uint16),
    "uint32": np.dtype(np.uint32),
    "uint64": np.dtype(np.uint64),
    "bool": np.dtype(np.bool_),
    "string": np.dtype(object),  # ONNX Runtime takes strings as an object array of str
}

Dim = int | str | None  # a fixed size, a named dynamic dimension ("batch"), or unknown


class OnnxModelError(RuntimeError):
    """An ONNX file is missing, unreadable or not a model ONNX Runtime can run; names the file."""


@dataclass(frozen=True)
class OnnxRuntimeOptions:
    """How every ONNX Runtime session of this process uses threads."""

    intra_op_threads: int = 1  # threads one operator (a matrix product, a tree ensemble) may use
    inter_op_threads: int = 1  # > 1 runs independent operators of a graph in parallel
    spin_wait: bool = False  # pool threads spin between runs: lower latency, burnt CPU

    def __post_init__(self) -> None:
        if self.intra_op_threads < 1 or self.inter_op_threads < 1:
            raise ValueError("ONNX Runtime needs at least one thread of each kind")


_process_options = OnnxRuntimeOptions()

# Every OnnxModel of this process (weakly), for `live_onnx_models`.
_live_models: weakref.WeakSet[OnnxModel] = weakref.WeakSet()

# Sessions this process let go of before forks (`sessions_released`).
_sessions_released = 0


def live_onnx_models() -> list[OnnxModel]:
    """Every `OnnxModel` of this process still alive: what a process about to exit closes."""
    return list(_live_models)


def sessions_released() -> int:
    """How many sessions this process has destroyed before forks so far.

    The server trims the heap before a fork when it grew (serving/runtime/onnx_process.py):
    the kit only counts, so it needs nothing of the server.
    """
    return _sessions_released


def configure_onnx_runtime(options: OnnxRuntimeOptions) -> None:
    """Set the thread options of sessions this process creates from now on.

    Process-wide on purpose: threads are a property of the process and its cores, not of
    a model. The app factory calls it from `Settings` before any handler's `setup()`.
    """
    global _process_options
    _process_options = options


def onnx_runtime_options() -> OnnxRuntimeOptions:
    """The thread options sessions of this process are created with."""
    return _process_options


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a graph: its name, ONNX type, numpy dtype and shape.

    `shape` holds an int per fixed dimension, the dimension's name (e.g. "batch_size")
    for a named dynamic one and None for an unnamed one; it is None when the value is not
    a tensor (ONNX Runtime shows a shape the graph does not declare as (), like a
    scalar's). `dtype` is None for non-tensors (sequences, maps) and element types
    numpy cannot hold.
    """

    name: str
    onnx_type: str  # as ONNX Runtime spells it: "tensor(float)", "seq(map(int64,tensor(float)))"
    dtype: np.dtype[Any] | None
    shape: tuple[Dim, ...] | None

    @property
    def is_tensor(self) -> bool:
        """True for a tensor; False for a sequence, a map or an optional value."""
        return self.onnx_type.startswith("tensor(")

    @property
    def element_type(self) -> str | None:
        """The tensor's ONNX element type ("float", "int64", "string"), None for a non-tensor."""
        return self.onnx_type[len("tensor(") : -1] if self.is_tensor else None

    @property
    def dynamic_axes(self) -> tuple[int, ...]:
        """Indices of the dimensions whose size is not fixed (the batch dimension, say)."""
        return tuple(i for i, dim in enumerate(self.shape or ()) if not isinstance(dim, int))

    def describe(self) -> str:
        """`name: tensor(float) [batch, 4]`, for messages."""
        dims = "unknown rank" if self.shape is None else "[" + ", ".join(_dim_text(d) for d in self.shape) + "]"
        return f"{self.name}: {self.onnx_type} {dims}"


def _dim_text(dim: Dim) -> str:
    return "?" if dim is None else str(dim)


def _spec(arg: Any) -> TensorSpec:
    onnx_type = str(arg.type)
    is_tensor = onnx_type.startswith("tensor(")
    dtype = _DTYPES.get(onnx_type[len("tensor(") : -1]) if is_tensor else None
    raw = arg.shape if is_tensor else None
    shape = None if raw is None else tuple(d if isinstance(d, int | str) else None for d in raw)
    return TensorSpec(name=str(arg.name), onnx_type=onnx_type, dtype=dtype, shape=shape)


class OnnxModel:
    """An ONNX graph served by ONNX Runtime on the CPU, safe across gunicorn's fork.

    `model` is a path to a `.onnx` file or its bytes. Thread counts default to the
    process's options (`configure_onnx_runtime`); pass them only for a model that must
    differ. `run` may be called from many threads at once.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | bytes,
        *,
        name: str | None = None,
        intra_op_threads: int | None = None,
        inter_op_threads: int | None = None,
    ) -> None:
        if isinstance(model, bytes):
            self.name = name or "<onnx bytes>"
            self._bytes = model
        else:
            path = Path(model)
            self.name = name or path.name
            try:
                self._bytes = path.read_bytes()
            except OSError as exc:
                raise OnnxModelError(f"{self.name}: cannot read the ONNX file ({exc.strerror})") from None
        self._intra = intra_op_threads
        self._inter = inter_op_threads
        self._lock = threading.Lock()
        self._owned: tuple[Any, int] | None = None  # (session, the pid that created it)
        self._inherited: list[Any] = []  # sessions of a parent process: never used, never freed
        # Threads of this process inside ONNX Runtime (a run, a session being built), and
        # the pid that closed the model (`close`); both per process, reset in a child.
        self._calls = threading.Condition()
        self._native_calls = 0
        self._closed_in: int | None = None
        # Tracked from here: a worker may exit while a background thread builds this session.
        _live_models.add(self)
        with self._native() as session:  # a file ONNX Runtime cannot load fails here, in setup()
            self.inputs: tuple[TensorSpec, ...] = tuple(_spec(arg) for arg in session.get_inputs())
            self.outputs: tuple[TensorSpec, ...] = tuple(_spec(arg) for arg in session.get_outputs())
        release_before_fork(self._release_before_fork)
        reset_in_forked_child(self._reset_in_child)

    @property
    def size_bytes(self) -> int:
        """Size of the serialized model."""
        return len(self._bytes)

    def input(self, name: str) -> TensorSpec:
        """The input called `name`; KeyError naming the inputs there are."""
        return _by_name(self.inputs, name, f"{self.name} has no input")

    def output(self, name: str) -> TensorSpec:
        """The output called `name`; KeyError naming the outputs there are."""
        return _by_name(self.outputs, name, f"{self.name} has no output")

    def warm(self) -> None:
        """Create this process's session now rather than at the first `run`."""
        with self._native():
            pass

    def close(self, timeout_s: float) -> bool:
        """Refuse new calls, wait up to `timeout_s` for running ones, destroy the session; False if still busy.

        For a process about to exit (the server's `worker_exit` hook closes every live
        model): the interpreter must not finalize while a thread is inside ONNX Runtime.
        A `run` after it raises `OnnxModelError`; a forked child may use the model again.
        """
        with self._calls:
            self._closed_in = os.getpid()
            if not self._calls.wait_for(lambda: self._native_calls == 0, timeout_s):
                return False
        with self._lock:
            owned, self._owned = self._owned, None
        if owned is not None and owned[1] != os.getpid():
            self._inherited.append(owned[0])
        return True

    def run(self, feeds: Mapping[str, Any], outputs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Run the graph once on a batch: input name -> array in, output name -> array out.

        Each feed is converted to its input's dtype when numpy can do so without changing
        kind (float64 to float32, say; not float to int); a missing or unknown input, a
        dtype that cannot be converted or a rank or fixed dimension that differs raises
        ValueError. `outputs` defaults to every tensor output; sequences and maps (e.g.
        skl2onnx's ZipMap, which `zipmap=False` avoids) are not returned.
        """
        arrays = self._feeds(feeds)
        names = list(outputs) if outputs is not None else [spec.name for spec in self.outputs if spec.is_tensor]
        for output_name in names:
            if not self.output(output_name).is_tensor:
                raise ValueError(f"{self.name}: output {output_name!r} is not a tensor")
        with self._native() as session:
            results = session.run(names, arrays)
        return {output_name: np.asarray(value) for output_name, value in zip(names, results, strict=True)}

    def _feeds(self, feeds: Mapping[str, Any]) -> dict[str, np.ndarray]:
        expected = {spec.name for spec in self.inputs}
        if set(feeds) != expected:
            missing, unknown = sorted(expected - set(feeds)), sorted(set(feeds) - expected)
            raise ValueError(
                f"{self.name}: feeds must be exactly {sorted(expected)}; missing {missing}, unknown {unknown}"
            )
        arrays: dict[str, np.ndarray] = {}
        for spec in self.inputs:
            array = np.asarray(feeds[spec.name])
            if spec.dtype is not None and array.dtype != spec.dtype:
                if spec.dtype.kind == "O" and array.dtype.kind == "U":
                    array = array.astype(object)
                elif np.can_cast(array.dtype, spec.dtype, casting="same_kind"):
                    array = array.astype(spec.dtype)
                else:
                    raise ValueError(f"{self.name}: input {spec.name!r} takes {spec.onnx_type}, got {array.dtype}")
            if spec.shape is not None:
                fixed = [(i, d) for i, d in enumerate(spec.shape) if isinstance(d, int)]
                if array.ndim != len(spec.shape) or any(array.shape[i] != d for i, d in fixed):
                    raise ValueError(f"{self.name}: input {spec.describe()} got an array of shape {array.shape}")
            arrays[spec.name] = array
        return arrays

    @contextlib.contextmanager
    def _native(self) -> Iterator[Any]:
        """This process's session, counted as in use until the block ends (`close` waits for it)."""
        with self._calls:
            if self._closed_in == os.getpid():
                raise OnnxModelError(f"{self.name}: closed, this process is stopping")
            self._native_calls += 1
        try:
            yield self._session()
        finally:
            with self._calls:
                self._native_calls -= 1
                self._calls.notify_all()

    def _session(self) -> Any:
        """This process's session, created on first use from the bytes."""
        owned = self._owned
        if owned is not None and owned[1] == os.getpid():
            return owned[0]
        with self._lock:
            owned = self._owned
            if owned is not None and owned[1] == os.getpid():
                return owned[0]
            if owned is not None:
                # A parent's session that reached this process: dropping it would join
                # the parent's pool threads, which do not exist here.
                self._inherited.append(owned[0])
            session = self._create_session()
            self._owned = (session, os.getpid())
            return session

    def _create_session(self) -> Any:
        import onnxruntime  # type: ignore[import-untyped]

        process = onnx_runtime_options()
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self._intra or process.intra_op_threads
        options.inter_op_num_threads = self._inter or process.inter_op_threads
        options.execution_mode = (
            onnxruntime.ExecutionMode.ORT_PARALLEL
            if options.inter_op_num_threads > 1
            else onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        )
        spin = "1" if process.spin_wait else "0"
        options.add_session_config_entry("session.intra_op.allow_spinning", spin)
        options.add_session_config_entry("session.inter_op.allow_spinning", spin)
        options.log_severity_level = 3  # errors only: converters' graphs draw harmless warnings
        try:
            return onnxruntime.InferenceSession(self._bytes, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own classes for a bad graph
            detail = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
            raise OnnxModelError(f"{self.name}: ONNX Runtime cannot load this model ({detail})") from None

    def _release_before_fork(self) -> None:
        # Runs in the parent: the session (unless a thread is running it right now) is
        # destroyed here, where its pool threads exist, and no child inherits it.
        global _sessions_released
        owned, self._owned = self._owned, None
        if owned is not None and owned[1] != os.getpid():
            self._inherited.append(owned[0])
        elif owned is not None:
            _sessions_released += 1

    def _reset_in_child(self) -> None:
        # A thread of the parent may have held the locks at the fork; it never releases them
        # here, and its calls in ONNX Runtime are not this process's.
        self._lock = threading.Lock()
        self._calls = threading.Condition()
        self._native_calls = 0
        # Build this process's session while the worker boots, so the first requests
        # wait less than a whole session creation (0.3 s for Digits' 200 trees); a run
        # that comes first waits on the lock for it.
        threading.Thread(target=self._warm_quietly, name=f"onnx-warm {self.name}", daemon=True).start()

    def _warm_quietly(self) -> None:
        # The bytes loaded in the parent, so creation fails only for want of memory; the
        # first run() then raises it where the core reports it.
        with contextlib.suppress(OnnxModelError, MemoryError):
            self.warm()


def json_floats(values: Any) -> list[float]:
    """A float32 array's values as JSON numbers at float32's precision: 0.005, not 0.004999999888241291.

    Each number is the shortest decimal that reads back as the same float32, so nothing
    the model computed is lost and nothing it did not compute is shown. A value that is
    not finite stays NaN or infinity (the output schema then refuses it).
    """
    floats: list[float] = _shortest(np.asarray(values, dtype=np.float32).ravel())
    return floats


def json_float_rows(values: Any) -> list[list[float]]:
    """`json_floats` of each row of a 2-D float32 array (one row per result), in one call.

    For a batch's probabilities: a model's `predict_batch` turns them all into JSON
    numbers at once, rather than one row at a time (3-7 us a row, more than the model).
    """
    array = np.asarray(values, dtype=np.float32)
    if array.ndim != 2:
        raise ValueError(f"expected a 2-D array, got shape {array.shape}")
    rows: list[list[float]] = _shortest(array)
    return rows


def _shortest(array: np.ndarray) -> Any:
    """`array` (float32) as nested lists of Python floats, each the shortest decimal of its float32.

    orjson writes a float32 array with the shortest digits that read back as the same
    float32 (the digits numpy's `astype(str)` gives, tests/runtime/test_onnx.py, at a
    tenth of its cost), and reads them back as Python floats. It writes NaN and infinity as null, so an array
    holding one takes numpy's way instead.
    """
    if not np.isfinite(array).all():
        return np.vectorize(float, otypes=[object])(array.astype(str)).tolist()
    return orjson.loads(orjson.dumps(np.ascontiguousarray(array), option=orjson.OPT_SERIALIZE_NUMPY))


def _by_name(specs: tuple[TensorSpec, ...], name: str, problem: str) -> TensorSpec:
    for spec in specs:
        if spec.name == name:
            return spec
    raise KeyError(f"{problem} {name!r}; it has {[spec.name for spec in specs]}")
