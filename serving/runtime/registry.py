"""Each model's load state in this process: pending, loading, ready, failed or unavailable.

`Registry` holds the `ModelSpec`s that `serving.runtime.handlers` loaded and, per
process, one `ModelRuntime` each: it runs the handler's `setup()` (with its artifacts,
fetched once per instance), keeps the loaded model and says why one cannot serve.
"""

from __future__ import annotations

import contextlib
import enum
import importlib.util
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from serving.config.artifact_uris import ArtifactSource
from serving.kit import ModelUnavailable
from serving.runtime.artifact_cache import ArtifactCache, FetchedArtifacts
from serving.runtime.cloud_storage import ArtifactFetchError
from serving.runtime.handlers import ModelSpec

log = logging.getLogger("serving.runtime.registry")


class ModelStatus(enum.StrEnum):
    PENDING = "pending"  # discovered, setup() not started (lazy loading)
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"  # setup() raised: the reason is kept and shown
    UNAVAILABLE = "unavailable"  # a REQUIRES module is not installed, or setup() raised ModelUnavailable


class ModelRuntime:
    """One model's state in this process: loads it once, thread-safely, and keeps it."""

    def __init__(
        self,
        spec: ModelSpec,
        artifacts: ArtifactSource | None = None,
        cache: ArtifactCache | None = None,
        on_ready: Callable[[ModelRuntime], None] | None = None,
    ) -> None:
        self.spec = spec
        self.status = ModelStatus.PENDING
        self.reason: str | None = None
        self.load_seconds: float | None = None
        # Where the artifacts come from, and (once loaded) where they are and their digest.
        self.artifacts_source = artifacts
        self.artifacts: FetchedArtifacts | None = None
        self._cache = cache
        self._on_ready = on_ready
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

    @property
    def version(self) -> str:
        """The served version: the handler's VERSION, plus `+<short digest>` of its artifacts."""
        if self.artifacts is None:
            return self.spec.version
        return f"{self.spec.version}+{self.artifacts.short_digest}"

    def _fetch_artifacts(self) -> Path | None:
        if self.artifacts_source is None:
            return None
        cache = self._cache or ArtifactCache()
        self.artifacts = cache.fetch(self.artifacts_source)
        return self.artifacts.path

    def _load(self) -> None:
        self.status = ModelStatus.LOADING
        started = time.perf_counter()
        try:
            directory = self._fetch_artifacts()
        except ArtifactFetchError as exc:  # its message names the URI and what went wrong
            self.status = ModelStatus.FAILED
            self.reason = str(exc)
            log.error("model %s failed to load: %s", self.spec.name, exc, extra={"model": self.spec.name})
            return
        try:
            setup = self.spec.setup
            if setup is None:
                self._model = None
            else:
                self._model = setup(directory) if self.spec.setup_takes_artifacts else setup()
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
            "model %s ready in %.3f s (version %s)",
            self.spec.name,
            self.load_seconds,
            self.version,
            extra={"model": self.spec.name, "model_version": self.version},
        )
        if self._on_ready is not None:
            self._on_ready(self)

    def describe(self) -> dict[str, Any]:
        """The model's public description (the `/v1/models` entry)."""
        spec = self.spec
        entry: dict[str, Any] = {
            "name": spec.name,
            "description": spec.description,
            "version": self.version,
            "status": self.status.value,
            "ready": self.status is ModelStatus.READY,
            "async": spec.async_mode,
            "batch": spec.predict_batch is not None,
            "input_schema": spec.input_schema,
            "output_schema": spec.output_schema,
        }
        if self.artifacts_source is not None:
            # The digest is known once the artifacts are fetched (at load).
            entry["artifacts"] = {
                "uri": self.artifacts_source.uri,
                "digest": self.artifacts.digest if self.artifacts is not None else None,
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

    def __init__(
        self,
        specs: list[ModelSpec],
        artifacts: Mapping[str, ArtifactSource] | None = None,
        cache: ArtifactCache | None = None,
    ) -> None:
        """`artifacts` overrides the specs' own ARTIFACTS by model name; `cache` fetches them."""
        sources = dict(artifacts) if artifacts is not None else {spec.name: spec.artifacts for spec in specs}
        self._ready_listeners: list[Callable[[ModelRuntime], None]] = []
        self._runtimes = {
            spec.name: ModelRuntime(spec, sources.get(spec.name), cache, self._model_ready) for spec in specs
        }

    def add_ready_listener(self, listener: Callable[[ModelRuntime], None]) -> None:
        """Call `listener(runtime)` for every model that is ready now or becomes ready later."""
        self._ready_listeners.append(listener)
        for runtime in self:
            if runtime.status is ModelStatus.READY:
                listener(runtime)

    def _model_ready(self, runtime: ModelRuntime) -> None:
        for listener in self._ready_listeners:
            try:
                listener(runtime)
            except Exception:  # an observer must not fail a model's load
                log.exception("a listener failed for model %s", runtime.spec.name)

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
