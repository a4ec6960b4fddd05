"""`X-Model-Version` on every response about one model, and the version in logs and metrics.

The served version is the handler's `VERSION`, plus `+` and the first 12 hex digits of
its artifacts' digest when it has artifacts (`1.0.0+3f2a9c0d1e4b`, SemVer's build
metadata form): two Cloud Run revisions or App Engine versions splitting traffic, or one
revision before and after a new upload to its bucket, answer with different versions.
The header is set on responses for a model that has loaded (so never one that failed);
the request's log line carries it as `model_version`, and `/metrics` has a
`model_serving_model_info{model,version}` gauge at 1 for each loaded model.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Response

from serving.observability.logs import current_model, tag_model_version
from serving.observability.metrics import Metrics
from serving.runtime.registry import ModelRuntime, ModelStatus, Registry

MODEL_VERSION_HEADER = "X-Model-Version"


def report_model_versions(registry: Registry, metrics: Metrics) -> None:
    """Report each model's version to the metrics when it has loaded."""

    def _report(runtime: ModelRuntime) -> None:
        metrics.set_model_version(runtime.spec.name, runtime.version)

    registry.add_ready_listener(_report)


def version_header(registry: Registry) -> Callable[[Response], Response]:
    """After-request step: the header on responses about a loaded model, and the version in its log line."""

    def _version(response: Response) -> Response:
        name = current_model()
        if name:
            runtime = registry.get(name)
            if runtime is not None and runtime.status is ModelStatus.READY:
                version = runtime.version
                response.headers[MODEL_VERSION_HEADER] = version
                tag_model_version(version)
        return response

    return _version
