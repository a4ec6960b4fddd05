"""Handler modules: what one declares, checked when it is loaded.

A handler module (see `handlers/xxx_model.py`) declares at module level:

- `NAME` (optional, default the module name): the URL segment of `POST /v1/<NAME>`;
- `INPUT_SCHEMA`: JSON Schema (draft 2020-12) of the request body; `OUTPUT_SCHEMA`
  (optional) of the result;
- `setup()` (optional): loads the model, once per process; its return value is passed
  to `predict`. A handler whose files live elsewhere sets `ARTIFACTS` (a `gs://` URI or
  a local path, see `serving.config.artifact_uris`) and takes them as `setup(artifacts)`:
  a `pathlib.Path` to a local directory holding them. Raising
  `serving.kit.ModelUnavailable` marks the model unavailable (e.g. its files are
  not installed here) instead of failed;
- `predict(model, payload)`: the result for one request, JSON-serialisable;
- optional: a docstring (first line is the description), `VERSION`, `REQUIRES` (module
  names that must be importable, else the model is *unavailable* rather than broken),
  `predict_batch(model, payloads)`, `ASYNC` (`"never"`, `"allowed"` or `"always"`),
  `BATCH` (`{"max_batch_size": int, "max_latency_ms": number}`) and `TIMEOUT_S` (the
  time budget of one call; 0 for calls that cannot hang: they then run on the request
  thread, without the hand-off to a call thread that a budget needs);
  `EMBEDDINGS` with `count_tokens(model, texts)` (the model produces text embeddings,
  served at `POST /v1/embeddings` too: see `serving/runtime/embeddings.py`);
  `prepare(model, payload)`: per-request work before the model call (decoding an image,
  tokenizing), run on the request's thread outside the batch and in parallel with other
  requests; `predict` and `predict_batch` then get what it returns instead of the payload;
  `admit(model, payload)`: a cheap check run before any `prepare` of the request (e.g.
  charging an image's pixels, read from its header, to the request's allowance), so a
  request of many items is refused before any of them is worked on; `prepare` (else
  `predict`) then gets what it returns.

`discover_handlers()` imports every `*.py` in a directory and fails with a
`HandlerError` naming the file, what it expected and what it found; `load_handler()`
turns one module into a `ModelSpec`. `serving.runtime.registry` keeps each model's
state.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import math
import re
import sys
import types
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from serving.config.artifact_uris import ArtifactSource, parse_artifact_uri
from serving.runtime.embeddings import EmbeddingsDeclarationError, EmbeddingsSpec, parse_embeddings
from serving.runtime.validation import SchemaValidator, schema_problem

NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
ASYNC_MODES = ("never", "allowed", "always")


class HandlerError(Exception):
    """A handler module does not follow the contract; the message names the file."""

    def __init__(self, path: Path, expected: str, found: str) -> None:
        super().__init__(f"{path}: expected {expected}, found {found}")
        self.path = path


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
    setup: Callable[..., Any] | None
    predict: Callable[[Any, Any], Any]
    predict_batch: Callable[[Any, list[Any]], list[Any]] | None
    requires: tuple[str, ...]
    async_mode: str
    batch: BatchPolicy
    timeout_s: float | None
    input_validator: SchemaValidator = field(repr=False, compare=False)
    output_validator: SchemaValidator | None = field(repr=False, compare=False)
    # Where `setup(artifacts)` finds its files, from the handler's ARTIFACTS (settings may
    # override it: see serving.runtime.artifact_sources), and whether setup takes them.
    artifacts: ArtifactSource | None = None
    setup_takes_artifacts: bool = False
    # Set when the handler declares EMBEDDINGS (served by POST /v1/embeddings too).
    embeddings: EmbeddingsSpec | None = None
    # The handler's optional `prepare(model, payload)`: what `predict`/`predict_batch` get
    # instead of the payload, computed on the request's own thread (serving/runtime/inference.py).
    prepare: Callable[[Any, Any], Any] | None = None
    # The handler's optional `admit(model, payload)`: a cheap check of every item of a request
    # before any is prepared; what it returns is what `prepare` gets.
    admit: Callable[[Any, Any], Any] | None = None

    def prepared(self, model: Any, payload: Any) -> Any:
        """What `predict` gets for `payload`: the handler's `admit`, then `prepare`, of it (each if declared).

        For callers outside the server (tests, scripts); the server runs the two stages itself
        (serving/runtime/inference.py), mapping what each raises to an API error.
        """
        admitted = self.admit(model, payload) if self.admit is not None else payload
        return self.prepare(model, admitted) if self.prepare is not None else admitted

    @property
    def input_examples(self) -> list[Any]:
        """The `examples` of INPUT_SCHEMA: the request examples of the model's operations."""
        examples = self.input_schema.get("examples")
        return list(examples) if isinstance(examples, list) else []


def discover_handlers(directory: Path, reserved_names: Collection[str] = ()) -> list[ModelSpec]:
    """Import every handler module in `directory` and check it against the contract.

    No NAME may be one of `reserved_names` (see `load_handler`).
    """
    if not directory.is_dir():
        raise HandlerError(directory, "a directory of handler modules", "no such directory")
    specs: list[ModelSpec] = []
    seen: dict[str, Path] = {}
    for path in sorted(directory.glob("*.py")):
        if path.name.startswith("_"):
            continue
        spec = load_handler(path, reserved_names)
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


def load_handler(path: Path, reserved_names: Collection[str] = ()) -> ModelSpec:
    """Import one handler module and return its checked `ModelSpec`.

    Its NAME may not be one of `reserved_names` (any case): the app passes the names its
    URLs take (`serving.protocols.reserved_names()` and the jobs'), which this layer
    cannot know.
    """
    module = _import_file(path)
    name = getattr(module, "NAME", path.stem)
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise HandlerError(
            path, "NAME to be letters, digits, '_', '.' or '-' (at most 64, starting with a letter)", repr(name)
        )
    if name.lower() in reserved_names:
        raise HandlerError(path, f"a NAME other than {', '.join(sorted(reserved_names))} (used by the API)", repr(name))

    if not hasattr(module, "INPUT_SCHEMA"):
        raise HandlerError(path, "INPUT_SCHEMA (a JSON Schema dict)", "none")
    input_schema = module.INPUT_SCHEMA
    output_schema = getattr(module, "OUTPUT_SCHEMA", None)
    for attr, schema in (("INPUT_SCHEMA", input_schema), ("OUTPUT_SCHEMA", output_schema)):
        problem = None if schema is None and attr == "OUTPUT_SCHEMA" else schema_problem(schema)
        if problem:
            raise HandlerError(path, f"{attr} to be a JSON Schema (draft 2020-12) dict", problem)

    setup, setup_takes_artifacts = _setup(module, path)
    artifacts = _artifacts(module, path, setup_takes_artifacts)
    predict = _callable(module, path, "predict", 2, required=True)
    predict_batch = _callable(module, path, "predict_batch", 2, required=False)
    prepare = _callable(module, path, "prepare", 2, required=False)
    admit = _callable(module, path, "admit", 2, required=False)

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

    embeddings = None
    count_tokens = _callable(module, path, "count_tokens", 2, required=False)
    if hasattr(module, "EMBEDDINGS"):
        try:
            embeddings = parse_embeddings(module.EMBEDDINGS, count_tokens, input_schema, output_schema)
        except EmbeddingsDeclarationError as exc:
            raise HandlerError(path, exc.expected, exc.found) from None

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
        artifacts=artifacts,
        setup_takes_artifacts=setup_takes_artifacts,
        embeddings=embeddings,
        prepare=prepare,
        admit=admit,
    )


def _setup(module: types.ModuleType, path: Path) -> tuple[Callable[..., Any] | None, bool]:
    """The handler's `setup`, and whether it takes the artifacts directory: `setup()` or `setup(artifacts)`."""
    setup = getattr(module, "setup", None)
    if setup is None:
        return None, False
    if not callable(setup):
        raise HandlerError(path, "`setup` to be a function", type(setup).__name__)
    found = _positional_arity(setup)
    if found is not None and found not in (0, 1):
        raise HandlerError(path, "`setup` taking 0 positional arguments, or 1 (the artifacts directory)", f"{found}")
    return setup, found == 1


def _artifacts(module: types.ModuleType, path: Path, setup_takes_artifacts: bool) -> ArtifactSource | None:
    raw = getattr(module, "ARTIFACTS", None)
    if raw is None:
        return None
    expected = "ARTIFACTS to be gs://BUCKET/PREFIX/, gs://BUCKET/OBJECT or a local path"
    if not isinstance(raw, (str, Path)):
        raise HandlerError(path, expected, type(raw).__name__)
    try:
        source = parse_artifact_uri(str(raw))
    except ValueError as exc:
        raise HandlerError(path, expected, f"{str(raw)!r} ({exc})") from None
    if not setup_takes_artifacts:
        found = "`setup()` without parameters" if getattr(module, "setup", None) is not None else "no `setup`"
        raise HandlerError(path, "`setup(artifacts)` taking the artifacts directory, since ARTIFACTS is set", found)
    return source


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
