"""What follows from the platform running this process: proxies to trust, log format, trace project.

The platform itself is `settings.platform` (serving/config/platform.py, computed once
from the variables each platform sets). From it follow the log format
(`LOG_FORMAT=auto`), how many proxy hops to trust (`PROXY_HOPS=auto`) and the project
that trace links name.
"""

from __future__ import annotations

import logging

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from serving.config.settings import Settings

log = logging.getLogger("serving.platform.detect")


def project_id(settings: Settings) -> str | None:
    """The project trace links name: `GOOGLE_CLOUD_PROJECT`, else `GCLOUD_PROJECT`."""
    return settings.google_cloud_project or settings.gcloud_project


def log_format(settings: Settings) -> str:
    """`gcp`, `json` or `text`: `LOG_FORMAT` with `auto` resolved for this platform."""
    if settings.log_format != "auto":
        return settings.log_format
    return "gcp" if settings.platform.behind_google_front_end else "json"


def proxy_hops(settings: Settings) -> int:
    """How many proxies' forwarding headers to trust: `PROXY_HOPS` with `auto` resolved.

    Google's front end is exactly one hop: it terminates TLS, sets `X-Forwarded-Proto`
    and appends the client address to `X-Forwarded-For`. Anything earlier in those headers
    came from the client and is not trusted. Locally nothing is in front, so a client's
    own forwarding headers are ignored.
    """
    if settings.proxy_hops is not None:
        return settings.proxy_hops
    return 1 if settings.platform.behind_google_front_end else 0


def adapt_to_platform(app: Flask, settings: Settings) -> None:
    """Trust the platform's front end (`PROXY_HOPS`) and say at start-up what was detected."""
    platform = settings.platform
    hops = proxy_hops(settings)
    trust_proxies(app, hops)
    project = project_id(settings)
    log.info(
        "platform %s, log format %s, trusting %d proxy hop(s)",
        platform.value,
        log_format(settings),
        hops,
        extra={"platform": platform.value, "project": project},
    )
    if platform.behind_google_front_end and project is None:
        log.warning(
            "GOOGLE_CLOUD_PROJECT is not set: log entries carry bare trace ids, which Cloud Logging "
            "does not link to their requests; set it in the service's environment"
        )


def trust_proxies(app: Flask, hops: int) -> None:
    """Make `request.scheme`, `url` and `remote_addr` those the client used, `hops` proxies out.

    Only `X-Forwarded-For` and `-Proto` are read: Google's front end passes the `Host` the
    client sent and sets no `X-Forwarded-Host`, so trusting that header would let a client
    choose the host in logged and generated URLs.
    """
    if hops > 0:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=0, x_port=0, x_prefix=0)  # type: ignore[method-assign]
