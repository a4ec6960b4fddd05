"""Settings Google Cloud sets or reads: proxies, project, runtime markers, Vertex AI's container contract.

`settings.platform` is the one answer to "where does this process run?": every module
that behaves differently on Google Cloud (log format, proxy hops, job stores, Cloud
Tasks, debug mode) reads it, never the variables themselves.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import NoReturn

from serving.config import parsers
from serving.config.fields import SettingsError, setting


@dataclass(frozen=True)
class VertexSettings:
    """Batch prediction and Vertex AI's custom container routes."""

    predict_max_instances: int = setting(
        "PREDICT_MAX_INSTANCES",
        1000,
        "Most predictions one request may ask for: `instances` of `POST /v1/models/<Model>:predict` and "
        "Vertex AI's predict route, texts of `POST /v1/embeddings`, rows of `POST /v2/models/<Model>/infer`; "
        "more get 413.",
        parsers.int_between(1, 1_000_000),
    )
    default_model: str | None = setting(
        "DEFAULT_MODEL",
        None,
        "Model that Vertex AI's predict route (`AIP_PREDICT_ROUTE`) serves; default the only model served.",
        parsers.model_name,
    )
    aip_http_port: int | None = setting(
        "AIP_HTTP_PORT",
        None,
        "Vertex AI custom container: the port to listen on (overrides `PORT`). Vertex AI sets it.",
        parsers.int_between(1, 65535),
    )
    aip_health_route: str | None = setting(
        "AIP_HEALTH_ROUTE",
        None,
        "Vertex AI custom container: route answering 200 only when `DEFAULT_MODEL` is ready. Vertex AI sets it.",
        parsers.route,
    )
    aip_predict_route: str | None = setting(
        "AIP_PREDICT_ROUTE",
        None,
        'Vertex AI custom container: route taking `{"instances": [...]}` for `DEFAULT_MODEL`. Vertex AI sets it.',
        parsers.route,
    )

    @property
    def vertex_ai(self) -> bool:
        """True when Vertex AI's custom container routes are configured."""
        return self.aip_health_route is not None and self.aip_predict_route is not None

    def check_vertex(self) -> None:
        """Reject one Vertex AI route without the other, or both on the same path."""
        if (self.aip_health_route is None) != (self.aip_predict_route is None):
            given, missing = (
                ("AIP_HEALTH_ROUTE", "AIP_PREDICT_ROUTE")
                if self.aip_predict_route is None
                else ("AIP_PREDICT_ROUTE", "AIP_HEALTH_ROUTE")
            )
            raise SettingsError(f"{given} is set but {missing} is not: Vertex AI sets both, set neither or both")
        if self.vertex_ai and self.aip_health_route == self.aip_predict_route:
            raise SettingsError(
                f"AIP_HEALTH_ROUTE={self.aip_health_route!r} is not valid: it must differ from AIP_PREDICT_ROUTE"
            )

    def default_model_name(self, served: Sequence[str]) -> str | None:
        """The model `DEFAULT_MODEL` names, else the only model `served`, else None.

        Raises `SettingsError` when `DEFAULT_MODEL` names no served model.
        """
        if self.default_model is not None:
            if self.default_model not in served:
                shown = ", ".join(served) or "none"
                raise SettingsError(
                    f"DEFAULT_MODEL={self.default_model!r} is not valid: no such model (served: {shown})"
                )
            return self.default_model
        return served[0] if len(served) == 1 else None

    def refuse_vertex_without_model(self, served: Sequence[str]) -> NoReturn:
        """Refuse Vertex AI's routes: they serve one model, and `served` has no single one to pick."""
        found = f"{len(served)} are ({', '.join(served)}): set DEFAULT_MODEL to one of them" if served else "none is"
        raise SettingsError(f"AIP_PREDICT_ROUTE={self.aip_predict_route!r} serves one model, but {found}")


class Platform(enum.StrEnum):
    """The platform running this process, from the variables each one sets (`PlatformSettings.platform`).

    App Engine standard sets `GAE_ENV=standard` and `GAE_SERVICE` (dev_appserver.py sets
    `GAE_ENV=localdev`), Cloud Run sets `K_SERVICE`, and Cloud Functions sets
    `FUNCTION_TARGET` beside `K_SERVICE` (every current runtime does). functions-framework
    sets `FUNCTION_TARGET` itself when run locally, so that alone means a local run.
    """

    APP_ENGINE = "app_engine"
    DEV_APPSERVER = "dev_appserver"  # App Engine's local emulator, on a developer's machine
    CLOUD_RUN = "cloud_run"
    CLOUD_FUNCTIONS = "cloud_functions"
    FUNCTIONS_FRAMEWORK = "functions_framework"  # `functions-framework` run locally
    LOCAL = "local"

    @property
    def on_google_cloud(self) -> bool:
        """True on Google's serverless machines: instances whose disk is thrown away, facing the internet."""
        return self in {Platform.APP_ENGINE, Platform.CLOUD_RUN, Platform.CLOUD_FUNCTIONS}

    @property
    def behind_google_front_end(self) -> bool:
        """True behind Google's front end (one proxy hop, Cloud Logging); dev_appserver.py counts: it mimics it."""
        return self.on_google_cloud or self is Platform.DEV_APPSERVER

    @property
    def is_app_engine(self) -> bool:
        """True on App Engine (not its local emulator): Cloud Tasks can target the app itself."""
        return self is Platform.APP_ENGINE

    @property
    def is_cloud_run(self) -> bool:
        return self is Platform.CLOUD_RUN

    @property
    def is_functions(self) -> bool:
        """True on Cloud Functions (not functions-framework run locally)."""
        return self is Platform.CLOUD_FUNCTIONS

    @property
    def marker(self) -> str | None:
        """The variable that shows this platform, for messages; None locally."""
        return _MARKERS.get(self)


_MARKERS = {
    Platform.APP_ENGINE: "GAE_ENV",
    Platform.DEV_APPSERVER: "GAE_ENV",
    Platform.CLOUD_RUN: "K_SERVICE",
    Platform.CLOUD_FUNCTIONS: "FUNCTION_TARGET",
    Platform.FUNCTIONS_FRAMEWORK: "FUNCTION_TARGET",
}


@dataclass(frozen=True)
class PlatformSettings:
    proxy_hops: int | None = setting(
        "PROXY_HOPS",
        None,
        "Proxies in front of the app whose `X-Forwarded-For`/`-Proto` are trusted (so URLs and "
        "`request.scheme` are https behind Google's front end); unset or `auto`: 1 on Google Cloud, 0 elsewhere.",
        parsers.proxy_hops,
    )
    google_cloud_project: str | None = setting(
        "GOOGLE_CLOUD_PROJECT",
        None,
        "Project id that log entries' trace links name. App Engine sets it; service.yaml and the Cloud "
        "Functions deploy command set it (Cloud Run does not).",
        parsers.project_id,
    )
    gcloud_project: str | None = setting(
        "GCLOUD_PROJECT", None, "Older name of `GOOGLE_CLOUD_PROJECT`, read when that is unset.", parsers.project_id
    )
    k_service: str | None = setting(
        "K_SERVICE",
        None,
        "Set by Cloud Run and Cloud Functions: the service name (means: on Google Cloud).",
        parsers.optional,
    )
    gae_env: str | None = setting(
        "GAE_ENV", None, "Set by App Engine (`standard`; `localdev` under dev_appserver.py).", parsers.optional
    )
    gae_service: str | None = setting("GAE_SERVICE", None, "Set by App Engine: the service name.", parsers.optional)
    function_target: str | None = setting(
        "FUNCTION_TARGET", None, "Set by Cloud Functions: the entry point's name (`api`).", parsers.optional
    )

    @cached_property
    def platform(self) -> Platform:
        """The platform whose variables are set; `Platform.LOCAL` when none are."""
        if self.function_target:
            return Platform.CLOUD_FUNCTIONS if self.k_service else Platform.FUNCTIONS_FRAMEWORK
        if self.gae_env == "localdev":
            return Platform.DEV_APPSERVER
        if self.gae_env or self.gae_service:
            return Platform.APP_ENGINE
        if self.k_service:
            return Platform.CLOUD_RUN
        return Platform.LOCAL

    def check_debug(self, debug: bool, switch: str = "FLASK_DEBUG") -> None:
        """Refuse debug mode (`switch` names what asked for it) on Google Cloud: the one place this rule lives.

        Flask's debug mode shows tracebacks and, with the development server, an interactive
        debugger that executes code: it must never face the internet.
        """
        if debug and self.platform.on_google_cloud:
            raise SettingsError(
                f"{switch} is refused on Google Cloud ({self.platform.marker} is set): debug mode must not be public"
            )
