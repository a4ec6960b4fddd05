"""Discovering handler modules and keeping each model's load state.

A handler module (see `handlers/xxx_model.py`) declares at module level:

- `NAME` (optional, default the module name): the URL segment of `POST /v1/<NAME>`;
- `INPUT_SCHEMA`: JSON Schema (draft 2020-12) of the request body; `OUTPUT_SCHEMA`
  (optional) of the result;
- `setup()` (optional): loads the model, once per process; its return value is passed
  to `predict`; raising `serving.contract.ModelUnavailable` marks the model unavailable
  (e.g. its files are not installed here) instead of failed;
- `predict(model, payload)`: the result for one request, JSON-serialisable;
- optional: a docstring (first line is the description), `VERSION`, `REQUIRES` (module
  names that must be importable, else the model is *unavailable* rather than broken),
  `predict_batch(model, payloads)`, `ASYNC` (`"never"`, `"allowed"` or `"always"`),
  `BATCH` (`{"max_batch_size": int, "max_latency_ms": number}`) and `TIMEOUT_S` (the
  time budget of one call; 0 for calls that cannot hang: they then run on the request
  thread, without the hand-off to a call thread that a budget needs).

`discover_handlers()` imports every `*.py` in a directory and fails with a
`HandlerError` naming the file, what it expected and what it found. `Registry` holds the
specs and, per process, each model's state: pending, loading, ready, failed or
unavailable.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import importlib.util
import inspect
import logging
import math
import re
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from serving.contract import ModelUnavailable
from serving.runtime.validation import SchemaValidator, schema_problem

log = logging.getLogger("serving.runtime.registry")

NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
ASYNC_MODES = ("never", "allowed", "always")
# URL segments under /v1/ that belong to the core, so no model may take them.
RESERVED_NAMES = frozenset({"models", "jobs"})


class HandlerError(Exception):
    """A handler module does not follow the contract; the message names the file."""

    def __init__(self, path: Path, expected: str, found: str) -> None:
        super().__init__(f"{path}: expected {expected}, found {found}")
        self.path = path


class ModelStatus(enum.StrEnum):
    PENDING = "pending"  # discovered, setup() not started (lazy loading)
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"  # setup() raised: the reason is kept and shown
    UNAVAILABLE = "unavailable"  # a REQUIRES module is not installed, or setup() raised ModelUnavailable


@dataclass(frozen=True)
class BatchPolicy:
    """How concurrent requests to one model may be gathered into one `predict_batch`."""

    max_batch_size: int = 32
    max_latency_ms: float = 5.0


@dataclass(frozen=True)
class ModelSpec:
    """What a handler module declares, checked and with its validators compiled."""

    name: str
    path: Path
    description: str
    version: str
    input_schema: Mapping[str, Any]
    output_schema: Mapping[str, Any] | None
    setup: Callable[[], Any] | None
    predict: Callable[[Any, Any], Any]
    predict_batch: Callable[[Any, list[Any]], list[Any]] | None
    requires: tuple[str, ...]
    async_mode: str
    batch: BatchPolicy
    timeout_s: float | None
    input_validator: SchemaValidator = field(repr=False, compare=False)
    output_validator: SchemaValidator | None = field(repr=False, compare=False)


class ModelRuntime:
    """One model's state in this process: loads it once, thread-safely, and keeps it."""

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self.status = ModelStatus.PENDING
        self.reason: str | None = None
        self.load_seconds: float | None = None
        self._model: Any = None
        self._lock = threading.Lock()
        missing = [name for name in spec.requires if importlib.util.find_spec(name) is None]
        if missing:
            self.status = ModelStatus.UNAVAILABLE
            self.reason = f"missing Python packages: {', '.join(missing)}"

    def ensure_loaded(self) -> Any:
        """The loaded model, running `setup()` first if no thread has yet.

        Raises `ModelNotReady` with the reason when setup failed or cannot run.
        """
        if self.status is not ModelStatus.READY:
            with self._lock:
                if self.status in (ModelStatus.PENDING, ModelStatus.LOADING):
                    self._load()
            self._raise_unless_ready()
        return self._model

    def _raise_unless_ready(self) -> None:
        if self.status is not ModelStatus.READY:
            raise ModelNotReady(self.spec.name, self.status, self.reason)

    def _load(self) -> None:
        self.status = ModelStatus.LOADING
        started = time.perf_counter()
        try:
            self._model = self.spec.setup() if self.spec.setup is not None else None
        except ModelUnavailable as exc:
            self.status = ModelStatus.UNAVAILABLE
            self.reason = str(exc)
            log.warning("model %s is unavailable: %s", self.spec.name, exc, extra={"model": self.spec.name})
            return
        except Exception as exc:  # a broken model must not take the server down
            self.status = ModelStatus.FAILED
            self.reason = f"setup() raised {exc.__class__.__name__}: {exc}"
            log.exception("model %s failed to load", self.spec.name, extra={"model": self.spec.name})
            return
        self.load_seconds = time.perf_counter() - started
        self.status = ModelStatus.READY
        log.info(
            "model %s ready in %.3f s",
            self.spec.name,
            self.load_seconds,
            extra={"model": self.spec.name},
        )

    def describe(self) -> dict[str, Any]:
        """The model's public description (the `/v1/models` entry)."""
        spec = self.spec
        entry: dict[str, Any] = {
            "name": spec.name,
            "description": spec.description,
            "version": spec.version,
            "status": self.status.value,
            "ready": self.status is ModelStatus.READY,
            "async": spec.async_mode,
            "batch": spec.predict_batch is not None,
            "input_schema": spec.input_schema,
            "output_schema": spec.output_schema,
        }
        if self.reason is not None:
            entry["reason"] = self.reason
        return entry


class ModelNotReady(Exception):
    """A model cannot serve: still loading, setup failed, or its packages are missing."""

    def __init__(self, name: str, status: ModelStatus, reason: str | None) -> None:
        super().__init__(f"model {name} is {status.value}" + (f": {reason}" if reason else ""))
        self.name = name
        self.status = status
        self.reason = reason


class Registry:
    """Every discovered model, by name, with its per-process runtime state."""

    def __init__(self, specs: list[ModelSpec]) -> None:
        self._runtimes = {spec.name: ModelRuntime(spec) for spec in specs}

    def __iter__(self) -> Iterator[ModelRuntime]:
        return iter(self._runtimes.values())

    def __len__(self) -> int:
        return len(self._runtimes)

    def get(self, name: str) -> ModelRuntime | None:
        """The model called `name`, or None."""
        return self._runtimes.get(name)

    def load_all(self) -> bool:
        """Run every pending `setup()`; True when every available model is ready."""
        for runtime in self:
            if runtime.status is ModelStatus.PENDING:
                # A failure is recorded on the runtime; readiness reports it.
                with contextlib.suppress(ModelNotReady):
                    runtime.ensure_loaded()
        return self.ready()

    def ready(self) -> bool:
        """True when every model whose packages are installed has loaded."""
        return all(runtime.status in (ModelStatus.READY, ModelStatus.UNAVAILABLE) for runtime in self)


def discover_handlers(directory: Path) -> list[ModelSpec]:
    """Import every handler module in `directory` and check it against the contract."""
    if not directory.is_dir():
        raise HandlerError(directory, "a directory of handler modules", "no such directory")
    specs: list[ModelSpec] = []
    seen: dict[str, Path] = {}
    for path in sorted(directory.glob("*.py")):
        if path.name.startswith("_"):
            continue
        spec = load_handler(path)
        if spec.name in seen:
            raise HandlerError(path, f"a NAME not used by another handler ({seen[spec.name]})", repr(spec.name))
        seen[spec.name] = path
        specs.append(spec)
    return specs


def _import_file(path: Path) -> types.ModuleType:
    # A unique module name per file keeps two apps (e.g. in tests) from sharing a module
    # object, and keeps a handler called `json.py` from shadowing the standard library.
    digest = hashlib.sha256(str(path.parent).encode()).hexdigest()[:10]
    module_name = f"_handlers_{digest}.{path.stem}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise HandlerError(path, "an importable Python module", "no module loader")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[module_name]
        raise HandlerError(path, "a module that imports cleanly", f"{exc.__class__.__name__}: {exc}") from exc
    return module


def _positional_arity(func: Callable[..., Any]) -> int | None:
    try:
        parameters = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return None
    kinds = [p.kind for p in parameters if p.default is inspect.Parameter.empty]
    if any(kind is inspect.Parameter.VAR_POSITIONAL for kind in kinds):
        return None
    return sum(kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD) for kind in kinds)


def _callable(module: types.ModuleType, path: Path, attr: str, arity: int, required: bool) -> Any:
    func = getattr(module, attr, None)
    if func is None:
        if required:
            raise HandlerError(path, f"a function `{attr}` taking {arity} arguments", "none")
        return None
    if not callable(func):
        raise HandlerError(path, f"`{attr}` to be a function", type(func).__name__)
    found = _positional_arity(func)
    if found is not None and found != arity:
        raise HandlerError(path, f"`{attr}` taking {arity} positional arguments", f"{found}")
    return func


def load_handler(path: Path) -> ModelSpec:
    """Import one handler module and return its checked `ModelSpec`."""
    module = _import_file(path)
    name = getattr(module, "NAME", path.stem)
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise HandlerError(
            path, "NAME to be letters, digits, '_', '.' or '-' (at most 64, starting with a letter)", repr(name)
        )
    if name.lower() in RESERVED_NAMES:
        raise HandlerError(path, f"a NAME other than {', '.join(sorted(RESERVED_NAMES))} (used by the API)", repr(name))

    if not hasattr(module, "INPUT_SCHEMA"):
        raise HandlerError(path, "INPUT_SCHEMA (a JSON Schema dict)", "none")
    input_schema = module.INPUT_SCHEMA
    output_schema = getattr(module, "OUTPUT_SCHEMA", None)
    for attr, schema in (("INPUT_SCHEMA", input_schema), ("OUTPUT_SCHEMA", output_schema)):
        problem = None if schema is None and attr == "OUTPUT_SCHEMA" else schema_problem(schema)
        if problem:
            raise HandlerError(path, f"{attr} to be a JSON Schema (draft 2020-12) dict", problem)

    setup = _callable(module, path, "setup", 0, required=False)
    predict = _callable(module, path, "predict", 2, required=True)
    predict_batch = _callable(module, path, "predict_batch", 2, required=False)

    version = getattr(module, "VERSION", "0")
    if not isinstance(version, str):
        raise HandlerError(path, "VERSION to be a string", type(version).__name__)
    requires = getattr(module, "REQUIRES", ())
    if not isinstance(requires, (tuple, list)) or not all(isinstance(r, str) for r in requires):
        raise HandlerError(path, "REQUIRES to be a tuple of module names", repr(requires))
    async_mode = getattr(module, "ASYNC", "allowed")
    if async_mode not in ASYNC_MODES:
        raise HandlerError(path, f"ASYNC to be one of {', '.join(ASYNC_MODES)}", repr(async_mode))
    batch = _batch_policy(path, getattr(module, "BATCH", None))
    timeout_s = getattr(module, "TIMEOUT_S", None)
    # 0 is allowed: "calls cannot hang, skip the time budget" (and its thread hand-off).
    bad_timeout = (
        isinstance(timeout_s, bool)
        or not isinstance(timeout_s, (int, float))
        or not math.isfinite(timeout_s)
        or timeout_s < 0
    )
    if timeout_s is not None and bad_timeout:
        raise HandlerError(path, "TIMEOUT_S to be a number of seconds >= 0", repr(timeout_s))

    doc = inspect.getdoc(module) or ""
    return ModelSpec(
        name=name,
        path=path,
        description=doc.strip().splitlines()[0] if doc.strip() else "",
        version=version,
        input_schema=input_schema,
        output_schema=output_schema,
        setup=setup,
        predict=predict,
        predict_batch=predict_batch,
        requires=tuple(requires),
        async_mode=async_mode,
        batch=batch,
        timeout_s=float(timeout_s) if timeout_s is not None else None,
        input_validator=SchemaValidator(input_schema),
        output_validator=SchemaValidator(output_schema) if output_schema is not None else None,
    )


def _batch_policy(path: Path, raw: object) -> BatchPolicy:
    if raw is None:
        return BatchPolicy()
    expected = "BATCH to be a dict with max_batch_size (int >= 1) and max_latency_ms (number >= 0)"
    if not isinstance(raw, Mapping) or set(raw) - {"max_batch_size", "max_latency_ms"}:
        raise HandlerError(path, expected, repr(raw))
    size = raw.get("max_batch_size", BatchPolicy.max_batch_size)
    latency = raw.get("max_latency_ms", BatchPolicy.max_latency_ms)
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise HandlerError(path, expected, repr(raw))
    if isinstance(latency, bool) or not isinstance(latency, (int, float)) or latency < 0:
        raise HandlerError(path, expected, repr(raw))
    return BatchPolicy(max_batch_size=size, max_latency_ms=float(latency))
