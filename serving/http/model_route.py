"""The `<model:name>` URL segment every protocol uses, and finding the model it names.

`model_name_converter` makes the converter that matches only what a handler's NAME may
be; `find_model` is the one lookup behind every protocol's model routes: 404 for no such
model (or version), 403 when the request's API key may not use it.
"""

from __future__ import annotations

from collections.abc import Collection

from werkzeug.routing import BaseConverter

from serving.errors import ModelNotFound
from serving.http.state import get_state
from serving.observability.logs import tag_model
from serving.runtime.handlers import NAME_PATTERN
from serving.runtime.registry import ModelRuntime
from serving.security.access import authorize_model


def model_name_converter(reserved_names: Collection[str]) -> type[BaseConverter]:
    """The `<model:name>` converter: a handler's NAME, never one of `reserved_names`.

    So `GET /v1/models/Iris:predict` is not taken for a model called `Iris:predict`, and
    `POST /v1/models` is a 405 (with an `Allow` that does not list POST) rather than a
    search for a model called `models`.
    """

    class ModelNameConverter(BaseConverter):
        # The reserved names are excluded in the pattern itself: Werkzeug computes a 405's
        # `Allow` from the patterns alone, before any converter code runs.
        regex = (
            r"(?!(?i:"
            + "|".join(sorted(reserved_names))
            + r")(?![A-Za-z0-9_.-]))"
            + NAME_PATTERN.pattern.removeprefix("^").removesuffix("$")
        )

    return ModelNameConverter


def find_model(name: str, version: str | None = None) -> ModelRuntime:
    """The model called `name`, or `ModelNotFound` (404); 403 when the API key may not use it.

    `version`, when the URL names one, must be the one served: the handler's `VERSION`,
    or that with its artifacts' digest as `X-Model-Version` shows it (`1.0.0+3f2a9c0d1e4b`).
    Any other is a 404, as TF Serving and the Open Inference Protocol answer it.
    """
    runtime = get_state().registry.get(name)
    if runtime is None:
        shown = name if len(name) <= 64 else name[:61] + "..."
        raise ModelNotFound(f"No model named {shown!r}; GET /v1/models lists the models served here")
    tag_model(runtime.spec.name)
    authorize_model(runtime.spec.name)
    if version is not None and version not in (runtime.spec.version, runtime.version):
        raise ModelNotFound(f"Model {runtime.spec.name} serves version {runtime.spec.version!r}, not {version[:64]!r}")
    return runtime
