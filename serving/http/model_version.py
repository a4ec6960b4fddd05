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

from flask import Flask, Response, g

from serving.http.state import get_state
from serving.runtime.registry import ModelRuntime, ModelStatus

MODEL_VERSION_HEADER = "X-Model-Version"


def install_model_version(app: Flask) -> None:
    """Add the header to model responses and report each loaded model's version to the metrics.

    Call it after `install_request_hooks`: after-request functions run last-added first,
    so the request's log line then sees `g.model_version`.
    """
    state = get_state(app)
    registry = state.registry
    metrics = state.metrics

    def _report(runtime: ModelRuntime) -> None:
        metrics.set_model_version(runtime.spec.name, runtime.version)

    registry.add_ready_listener(_report)

    @app.after_request
    def _version(response: Response) -> Response:
        name = g.get("model")
        if name:
            runtime = registry.get(name)
            if runtime is not None and runtime.status is ModelStatus.READY:
                version = runtime.version
                response.headers[MODEL_VERSION_HEADER] = version
                g.model_version = version
        return response
