"""Settings Google Cloud sets or reads: proxies, project, runtime markers, Vertex AI's container contract."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
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

    @property
    def google_cloud_runtime(self) -> str | None:
        """The variable that shows this runs on Google Cloud, or None when it does not."""
        # dev_appserver.py sets GAE_ENV=localdev: that is a developer's machine.
        if self.gae_env and self.gae_env != "localdev":
            return "GAE_ENV"
        if self.k_service:
            return "K_SERVICE"
        return "FUNCTION_TARGET" if self.function_target else None
