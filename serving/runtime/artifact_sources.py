"""Which artifacts each model is served from, after the settings have had their say.

A handler's `ARTIFACTS` is its default. `MODEL_ARTIFACTS` (`Name=uri,...`) overrides it per
model, and in Vertex AI mode `AIP_STORAGE_URI` (the Model resource's artifact URI)
overrides the artifacts of the model that Vertex AI's predict route serves, since that is
where Vertex AI put the model's files. Mistakes stop start-up: a name that no handler
has, or artifacts for a `setup()` that cannot take them, raise `SettingsError` naming the
variable (checked here, where the served models are known); a `setup(artifacts)` with no
artifacts from anywhere raises `HandlerError` naming its file.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from serving.config.artifact_uris import ArtifactSource
from serving.config.settings import Settings, SettingsError
from serving.runtime.artifact_cache import ArtifactCache
from serving.runtime.handlers import HandlerError, ModelSpec

log = logging.getLogger("serving.runtime.artifact_sources")


def artifact_cache(settings: Settings) -> ArtifactCache:
    """The cache that fetches artifacts as `settings` say (directory, timeout, parallelism, emulator)."""
    return ArtifactCache(
        settings.artifacts_cache_dir,
        timeout_s=settings.artifacts_timeout_s,
        workers=settings.artifacts_download_workers,
        emulator_host=settings.storage_emulator_host,
    )


def artifact_sources(settings: Settings, specs: list[ModelSpec]) -> dict[str, ArtifactSource]:
    """Each model's artifacts by name (models without any are left out)."""
    sources = {spec.name: spec.artifacts for spec in specs if spec.artifacts is not None}

    check_model_artifacts(settings.model_artifacts, {spec.name: spec.setup_takes_artifacts for spec in specs})
    sources.update(settings.model_artifacts)

    if settings.aip_storage_uri is not None and settings.vertex_ai:
        # The model Vertex AI's routes serve, by the one rule (`Settings.default_model_name`).
        vertex_name = settings.default_model_name([spec.name for spec in specs])
        vertex_model = next((spec for spec in specs if spec.name == vertex_name), None)
        if vertex_model is None:
            pass  # serving/protocols/vertex/ refuses to start without one model to serve
        elif not vertex_model.setup_takes_artifacts:
            log.warning(
                "AIP_STORAGE_URI=%s is ignored: model %s's setup() takes no artifacts parameter",
                settings.aip_storage_uri.uri,
                vertex_model.name,
            )
        else:
            sources[vertex_model.name] = settings.aip_storage_uri

    for spec in specs:
        if spec.setup_takes_artifacts and spec.name not in sources:
            raise HandlerError(
                spec.path,
                f"ARTIFACTS (where `setup(artifacts)` finds its files), or MODEL_ARTIFACTS naming {spec.name!r}",
                "neither",
            )
    return sources


def check_model_artifacts(
    overrides: tuple[tuple[str, ArtifactSource], ...], setup_takes_artifacts: Mapping[str, bool]
) -> None:
    """Refuse `MODEL_ARTIFACTS` for a model that is not served, or whose `setup()` takes no artifacts.

    `setup_takes_artifacts` maps each served model's name to whether its setup has the parameter.
    """
    served = ", ".join(sorted(setup_takes_artifacts)) or "none"
    for name, _source in overrides:
        takes = setup_takes_artifacts.get(name)
        if takes is None:
            raise SettingsError(f"MODEL_ARTIFACTS names {name!r}, which is not a served model (served: {served})")
        if not takes:
            raise SettingsError(
                f"MODEL_ARTIFACTS gives artifacts to {name!r}, but its setup() takes no artifacts parameter"
            )
