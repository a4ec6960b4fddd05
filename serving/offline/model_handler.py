"""A Beam `ModelHandler` for any handler module: RunInference with the server's own code.

`HandlerModelHandler(path)` turns one handler module (`handlers/iris.py`) into what Beam's
`RunInference` runs (apache_beam.ml.inference.base):

- `load_model()` runs the handler's `setup()` once per worker process (Beam keeps the model
  in its per-process `Shared` cache), with the artifacts resolved, verified and cached
  exactly as the server does it (`serving.runtime.registry.ModelRuntime` with an
  `ArtifactCache`): `gs://` objects are downloaded once per machine under a file lock,
  and their digest becomes part of the version;
- each element is checked against `INPUT_SCHEMA` *before* batching (a preprocessing step
  that `get_preprocess_fns` contributes), so one invalid element fails alone;
- `run_inference` runs the handler's `admit` and `prepare` (if any) on each element, then calls
  `predict_batch` once per batch (else `predict` per element); when
  `predict_batch` raises or returns something unusable, the batch is retried element by
  element, so one row the model cannot handle fails only itself;
- `batch_elements_kwargs` come from the handler's `BATCH` (`max_batch_size`);
- every result is a `PredictionResult` whose `model_id` is `<NAME>/<version>`, the version
  being what `X-Model-Version` says (`VERSION`, plus `+<digest>` of the artifacts).

Use it with `RunInference(handler).with_exception_handling()`: invalid elements land in
the dead-letter output's `failed_preprocessing`, and elements the model failed on in its
`failed_postprocessing`, each as `(element, (type, reason, traceback))`. They are counted
in Beam metrics under the namespace `model_serving/<NAME>` (`invalid`, `failed`, beside
`scored`). Without exception handling such an element fails the pipeline, as any
exception in a Beam transform does.

Elements are payloads (what `POST /v1/<NAME>` takes as its body), or `Row`s that carry a
payload together with a key and the source line, which the results keep (`.example`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from apache_beam.metrics.metric import Metrics
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from serving.config.artifact_uris import parse_artifact_uri
from serving.config.artifacts_settings import DEFAULT_ARTIFACTS_CACHE_DIR
from serving.config.fields import PROJECT_ROOT
from serving.config.settings import Settings
from serving.kit import InvalidInput
from serving.runtime.artifact_cache import ArtifactCache
from serving.runtime.artifact_sources import artifact_sources
from serving.runtime.handlers import HandlerError, ModelSpec, discover_handlers, load_handler
from serving.runtime.registry import ModelNotReady, ModelRuntime

log = logging.getLogger("serving.offline.model_handler")


class Row(NamedTuple):
    """An element with what a pipeline writes back beside the result: its key and source line."""

    payload: Any
    key: Any = None
    line: str | None = None


class ScoringError(Exception):
    """An element that could not be scored; its repr is its reason.

    Beam's exception outputs keep `repr(exception)`, so the reason reads the same there.
    """

    def __repr__(self) -> str:
        return str(self)


class InvalidElement(ScoringError):
    """The element breaks INPUT_SCHEMA, or the model found its content unusable (a 400 on the server)."""


class ModelFailed(ScoringError):
    """The model raised on this element, or answered with a result that breaks OUTPUT_SCHEMA (a 500)."""


class ModelLoadError(RuntimeError):
    """The model cannot load on this worker; the message says why (as `/v1/models` would)."""


class UnknownModel(LookupError):
    """No handler in the handlers directory has this NAME."""

    def __init__(self, name: str, directory: Path, known: Sequence[str]) -> None:
        super().__init__(f"no model named {name!r} in {directory} (models: {', '.join(sorted(known)) or 'none'})")


@dataclass(frozen=True)
class ArtifactFetching:
    """How workers fetch artifacts: the server's ARTIFACTS_* settings, as picklable values."""

    cache_dir: Path = DEFAULT_ARTIFACTS_CACHE_DIR
    timeout_s: float = 300.0
    workers: int = 8
    emulator_host: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> ArtifactFetching:
        """The fetching that `settings` describe (ARTIFACTS_CACHE_DIR, ..., STORAGE_EMULATOR_HOST)."""
        return cls(
            settings.artifacts_cache_dir,
            settings.artifacts_timeout_s,
            settings.artifacts_download_workers,
            settings.storage_emulator_host,
        )

    def cache(self) -> ArtifactCache:
        return ArtifactCache(
            self.cache_dir, timeout_s=self.timeout_s, workers=self.workers, emulator_host=self.emulator_host
        )


@dataclass(frozen=True)
class LoadedHandler:
    """A handler's model as `setup()` returned it, with the version it serves."""

    spec: ModelSpec
    model: Any
    version: str

    @property
    def model_id(self) -> str:
        """`<NAME>/<version>`, e.g. `Digits/1.0.0+3f2a9c1b7d20`."""
        return f"{self.spec.name}/{self.version}"


@dataclass(frozen=True)
class ModelFailure:
    """What `run_inference` gives a row the model failed on; the postprocessing step raises it."""

    reason: str
    invalid_input: bool = False

    def error(self) -> ScoringError:
        return InvalidElement(self.reason) if self.invalid_input else ModelFailed(self.reason)


class HandlerModelHandler(ModelHandler[Any, PredictionResult, LoadedHandler]):
    """RunInference's `ModelHandler` for the handler module at `handler`."""

    def __init__(
        self,
        handler: Path,
        *,
        artifacts: str | None = None,
        fetching: ArtifactFetching | None = None,
        validate_output: bool = True,
        max_batch_size: int | None = None,
    ) -> None:
        """Check the handler module now (`HandlerError` names the file); load it on the workers.

        `artifacts` overrides the handler's ARTIFACTS (a `gs://` URI, or a path that every
        worker has); `max_batch_size` overrides its BATCH's.
        """
        spec = load_handler(handler)
        if spec.setup_takes_artifacts and artifacts is None and spec.artifacts is None:
            raise HandlerError(
                handler, "ARTIFACTS (where `setup(artifacts)` finds its files), or artifacts given", "none"
            )
        if artifacts is not None:
            parse_artifact_uri(artifacts)  # a bad URI fails here, not on a worker
        super().__init__(min_batch_size=1, max_batch_size=max_batch_size or spec.batch.max_batch_size)
        # Relative to the project root when under it: on Dataflow workers the project is
        # installed elsewhere (site-packages), and the path is resolved there.
        self._handler = (
            str(handler.resolve().relative_to(PROJECT_ROOT))
            if handler.resolve().is_relative_to(PROJECT_ROOT)
            else str(handler.resolve())
        )
        self._artifacts = artifacts
        self._fetching = fetching or ArtifactFetching()
        self._validate_output = validate_output
        self.name = spec.name
        # The spec holds functions of a module imported from a file path, which a worker
        # cannot unpickle: it is dropped when pickled and loaded again where it is used.
        self._loaded_spec: ModelSpec | None = spec

    @classmethod
    def for_model(cls, name: str, settings: Settings, **kwargs: Any) -> HandlerModelHandler:
        """The handler that serves `name` in `settings.handlers_dir`, with the server's artifacts settings.

        MODEL_ARTIFACTS overrides a handler's ARTIFACTS here as in the server.
        Raises `UnknownModel`, `HandlerError` or `SettingsError`.
        """
        specs = discover_handlers(settings.handlers_dir)
        spec = next((spec for spec in specs if spec.name == name), None)
        if spec is None:
            raise UnknownModel(name, settings.handlers_dir, [spec.name for spec in specs])
        source = artifact_sources(settings, specs).get(name)
        override = source.uri if source is not None and source != spec.artifacts else None
        return cls(spec.path, artifacts=override, fetching=ArtifactFetching.from_settings(settings), **kwargs)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_loaded_spec"] = None
        return state

    def _spec(self) -> ModelSpec:
        if self._loaded_spec is None:
            self._loaded_spec = load_handler(PROJECT_ROOT / self._handler)
        return self._loaded_spec

    # --- Beam's ModelHandler contract ---

    def load_model(self) -> LoadedHandler:
        """The handler's `setup()` with its artifacts fetched; `ModelLoadError` saying why it cannot load."""
        spec = self._spec()
        source = parse_artifact_uri(self._artifacts) if self._artifacts is not None else spec.artifacts
        runtime = ModelRuntime(spec, source, self._fetching.cache())
        try:
            model = runtime.ensure_loaded()
        except ModelNotReady as exc:
            raise ModelLoadError(str(exc)) from None
        return LoadedHandler(spec, model, runtime.version)

    def run_inference(
        self, batch: Sequence[Any], model: LoadedHandler, inference_args: dict[str, Any] | None = None
    ) -> Iterable[PredictionResult]:
        """One result per element, in order: the model's answer, or a `ModelFailure` for that element."""
        outcomes = self._predict(model, [_payload(element) for element in batch])
        failed = sum(isinstance(outcome, ModelFailure) for outcome in outcomes)
        self._counter("scored").inc(len(outcomes) - failed)
        return [
            PredictionResult(element, outcome, model.model_id) for element, outcome in zip(batch, outcomes, strict=True)
        ]

    def get_metrics_namespace(self) -> str:
        return f"model_serving/{self.name}"

    def get_preprocess_fns(self) -> Iterable[Any]:
        return [self._validate, *super().get_preprocess_fns()]

    def get_postprocess_fns(self) -> Iterable[Any]:
        return [self._raise_failure, *super().get_postprocess_fns()]

    # --- the steps ---

    def _validate(self, element: Any) -> Any:
        """`element` itself when its payload matches INPUT_SCHEMA; else `InvalidElement` saying where and why."""
        found = self._spec().input_validator.first_error(_payload(element))
        if found is None:
            return element
        message, path = found
        self._counter("invalid").inc()
        raise InvalidElement(f"invalid input at {path}: {message}")

    def _raise_failure(self, result: PredictionResult) -> PredictionResult:
        if isinstance(result.inference, ModelFailure):
            self._counter("invalid" if result.inference.invalid_input else "failed").inc()
            raise result.inference.error()
        return result

    def _predict(self, model: LoadedHandler, payloads: list[Any]) -> list[Any]:
        """Each payload's result or `ModelFailure`: `admit` and `prepare` each, then `_predict_prepared`."""
        outcomes = [self._prepare_one(model, payload) for payload in payloads]
        ready = [index for index, outcome in enumerate(outcomes) if not isinstance(outcome, ModelFailure)]
        results = self._predict_prepared(model, [outcomes[index] for index in ready])
        for index, result in zip(ready, results, strict=True):
            outcomes[index] = result
        return outcomes

    def _prepare_one(self, model: LoadedHandler, payload: Any) -> Any:
        """What the handler's `admit` then `prepare` make of `payload` (itself without them), or its `ModelFailure`."""
        value = payload
        for stage_name, stage in (("admit", model.spec.admit), ("prepare", model.spec.prepare)):
            if stage is None:
                continue
            try:
                value = stage(model.model, value)
            except InvalidInput as exc:
                reason = exc or "no reason given"
                return ModelFailure(f"the model could not use this input: {reason}", invalid_input=True)
            except Exception as exc:  # noqa: BLE001 - the row goes to the dead-letter output with the reason
                log.warning("%s: %s raised %s: %s", self.name, stage_name, exc.__class__.__name__, exc)
                return ModelFailure(f"{stage_name} raised {exc.__class__.__name__}: {exc}")
        return value

    def _predict_prepared(self, model: LoadedHandler, payloads: list[Any]) -> list[Any]:
        """Each prepared input's result or `ModelFailure`: one `predict_batch`, else (or if it fails) `predict` each."""
        if not payloads:
            return []
        predict_batch = model.spec.predict_batch
        if predict_batch is not None and len(payloads) > 1:
            try:
                results = predict_batch(model.model, payloads)
            except Exception as exc:  # noqa: BLE001 - one unusable row fails a vectorised call; find which
                log.info("%s: predict_batch raised %s; retrying row by row", self.name, exc.__class__.__name__)
            else:
                usable = isinstance(results, list) and len(results) == len(payloads)
                if usable and all(self._output_problem(model, result) is None for result in results):
                    return list(results)
                log.error("%s: predict_batch gave an unusable answer; retrying row by row", self.name)
        return [self._predict_one(model, payload) for payload in payloads]

    def _predict_one(self, model: LoadedHandler, payload: Any) -> Any:
        try:
            result = model.spec.predict(model.model, payload)
        except InvalidInput as exc:
            return ModelFailure(f"the model could not use this input: {exc or 'no reason given'}", invalid_input=True)
        except Exception as exc:  # noqa: BLE001 - the row goes to the dead-letter output with the reason
            log.warning("%s: predict raised %s: %s", self.name, exc.__class__.__name__, exc)
            return ModelFailure(f"predict raised {exc.__class__.__name__}: {exc}")
        problem = self._output_problem(model, result)
        return ModelFailure(problem) if problem is not None else result

    def _output_problem(self, model: LoadedHandler, result: Any) -> str | None:
        validator = model.spec.output_validator
        if not self._validate_output or validator is None:
            return None
        found = validator.first_error(result)
        if found is None:
            return None
        message, path = found
        return f"predict returned a result that breaks OUTPUT_SCHEMA at {path}: {message}"

    def _counter(self, name: str) -> Any:
        return Metrics.counter(self.get_metrics_namespace(), name)


def _payload(element: Any) -> Any:
    return element.payload if isinstance(element, Row) else element
