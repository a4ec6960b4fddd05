"""Platform detection, the settings it drives, and trusting exactly Google's front end."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from serving.config.platform import Platform
from serving.config.settings import Settings, SettingsError
from serving.platform.detect import log_format, project_id, proxy_hops

APP_ENGINE = {"GAE_ENV": "standard", "GAE_SERVICE": "default", "GOOGLE_CLOUD_PROJECT": "shop-prod"}
CLOUD_RUN = {"K_SERVICE": "model-serving", "K_REVISION": "model-serving-00002-xyz"}
CLOUD_FUNCTIONS = {"K_SERVICE": "api", "FUNCTION_TARGET": "api", "FUNCTION_SIGNATURE_TYPE": "http"}


@pytest.mark.parametrize(
    ("env", "platform"),
    [
        ({}, Platform.LOCAL),
        (APP_ENGINE, Platform.APP_ENGINE),
        ({"GAE_ENV": "localdev", "GAE_SERVICE": "default"}, Platform.DEV_APPSERVER),
        ({"GAE_SERVICE": "default"}, Platform.APP_ENGINE),
        (CLOUD_RUN, Platform.CLOUD_RUN),
        (CLOUD_FUNCTIONS, Platform.CLOUD_FUNCTIONS),
        ({"FUNCTION_TARGET": "api"}, Platform.FUNCTIONS_FRAMEWORK),
        ({"K_SERVICE": ""}, Platform.LOCAL),
    ],
    ids=[
        "local",
        "app-engine",
        "dev-appserver",
        "gae-service-only",
        "cloud-run",
        "cloud-functions",
        "functions-framework",
        "empty",
    ],
)
def test_detect_platform(env: dict[str, str], platform: Platform) -> None:
    assert Settings.from_env(env).platform is platform


# Every module that behaves differently on Google Cloud asks one of these; one table says them all.
@pytest.mark.parametrize(
    ("platform", "on_google_cloud", "behind_front_end", "app_engine", "cloud_run", "functions", "marker"),
    [
        (Platform.APP_ENGINE, True, True, True, False, False, "GAE_ENV"),
        (Platform.DEV_APPSERVER, False, True, False, False, False, "GAE_ENV"),
        (Platform.CLOUD_RUN, True, True, False, True, False, "K_SERVICE"),
        (Platform.CLOUD_FUNCTIONS, True, True, False, False, True, "FUNCTION_TARGET"),
        (Platform.FUNCTIONS_FRAMEWORK, False, False, False, False, False, "FUNCTION_TARGET"),
        (Platform.LOCAL, False, False, False, False, False, None),
    ],
    ids=lambda value: value.value if isinstance(value, Platform) else None,
)
def test_platform_properties(
    platform: Platform,
    on_google_cloud: bool,
    behind_front_end: bool,
    app_engine: bool,
    cloud_run: bool,
    functions: bool,
    marker: str | None,
) -> None:
    assert platform.on_google_cloud is on_google_cloud
    assert platform.behind_google_front_end is behind_front_end
    assert (platform.is_app_engine, platform.is_cloud_run, platform.is_functions) == (app_engine, cloud_run, functions)
    assert platform.marker == marker


@pytest.mark.parametrize(
    ("env", "expected_format", "expected_hops"),
    [
        ({}, "json", 0),
        (APP_ENGINE, "gcp", 1),
        (CLOUD_RUN, "gcp", 1),
        (CLOUD_FUNCTIONS, "gcp", 1),
        ({"FUNCTION_TARGET": "api"}, "json", 0),
        ({**CLOUD_RUN, "LOG_FORMAT": "text", "PROXY_HOPS": "2"}, "text", 2),
        ({"LOG_FORMAT": "gcp", "PROXY_HOPS": "auto"}, "gcp", 0),
        ({**APP_ENGINE, "PROXY_HOPS": "0"}, "gcp", 0),
    ],
    ids=[
        "local",
        "app-engine",
        "cloud-run",
        "cloud-functions",
        "functions-framework",
        "forced",
        "gcp-locally",
        "no-hops",
    ],
)
def test_auto_settings_follow_the_platform(env: dict[str, str], expected_format: str, expected_hops: int) -> None:
    settings = Settings.from_env(env)

    assert log_format(settings) == expected_format
    assert proxy_hops(settings) == expected_hops


@pytest.mark.parametrize(
    ("env", "project"),
    [
        ({}, None),
        ({"GOOGLE_CLOUD_PROJECT": "shop-prod"}, "shop-prod"),
        ({"GCLOUD_PROJECT": "legacy-name"}, "legacy-name"),
        ({"GOOGLE_CLOUD_PROJECT": "shop-prod", "GCLOUD_PROJECT": "legacy-name"}, "shop-prod"),
        ({"GOOGLE_CLOUD_PROJECT": "example.com:shop"}, "example.com:shop"),
    ],
    ids=["unset", "google-cloud-project", "gcloud-project", "precedence", "domain-scoped"],
)
def test_project_id(env: dict[str, str], project: str | None) -> None:
    assert project_id(Settings.from_env(env)) == project


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PROXY_HOPS": "lots"}, "PROXY_HOPS='lots' is not valid: expected auto or an integer from 0 to 5"),
        ({"PROXY_HOPS": "9"}, "PROXY_HOPS='9' is not valid"),
        ({"LOG_FORMAT": "stackdriver"}, "expected one of auto, gcp, json, text"),
        ({"GOOGLE_CLOUD_PROJECT": "My Project"}, "GOOGLE_CLOUD_PROJECT='My Project' is not valid"),
    ],
    ids=["hops-word", "hops-range", "format", "project"],
)
def test_bad_platform_settings_stop_start_up(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Settings.from_env(env)


# Each proxy appends what it saw; the rightmost value is the nearest proxy's.
FORWARDED = {"X-Forwarded-Proto": "http, https", "X-Forwarded-For": "198.51.100.7, 203.0.113.9"}


@pytest.mark.parametrize(
    ("hops", "scheme", "remote"),
    [(1, "https", "203.0.113.9"), (0, "http", "127.0.0.1"), (2, "http", "198.51.100.7")],
    ids=["one-hop", "none", "two-hops"],
)
def test_proxy_hops_decide_scheme_and_client_address(
    make_app: Any, caplog: pytest.LogCaptureFixture, hops: int, scheme: str, remote: str
) -> None:
    client = make_app(proxy_hops=hops).test_client()
    caplog.set_level(logging.INFO, logger="serving.request")

    client.get("/healthz", headers={**FORWARDED, "X-Forwarded-Host": "evil.example"})

    (record,) = [r for r in caplog.records if r.name == "serving.request"]
    http = record.__dict__["http_request"]
    assert http["requestUrl"] == f"{scheme}://localhost/healthz"  # X-Forwarded-Host is never trusted
    assert http["remoteIp"] == remote


def test_start_up_warns_when_trace_links_cannot_name_the_project(
    make_app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="serving.platform.detect")

    make_app(k_service="model-serving")

    messages = [r.getMessage() for r in caplog.records if r.name == "serving.platform.detect"]
    assert any(m.startswith("platform cloud_run, log format gcp, trusting 1 proxy hop") for m in messages)
    assert any("GOOGLE_CLOUD_PROJECT is not set" in m for m in messages)
