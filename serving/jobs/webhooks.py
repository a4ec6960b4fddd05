"""Completion webhooks: `POST` the job document to the URL the client gave, safely.

A webhook URL comes from an anonymous client, so the server must not become a way to
reach what only it can reach (SSRF): the instance metadata server at 169.254.169.254, a
private VPC, its own loopback. Rules:

- `https` only; `http` only to loopback addresses and only when
  `JOBS_WEBHOOK_ALLOW_LOOPBACK` is on (local development). No user:password in the URL.
- The host name is resolved at delivery and every address it resolves to must be public
  (`ipaddress.is_global`, not multicast; IPv4-mapped and 6to4 IPv6 addresses are judged by
  the IPv4 address inside). The connection goes to the address that was checked, so a DNS
  answer that changes between check and connect (rebinding) changes nothing. TLS still
  verifies the certificate against the host name.
- Redirects are not followed. A 2xx answer is a delivery; anything else is retried with
  exponential backoff up to `JOBS_WEBHOOK_MAX_ATTEMPTS`. Deliveries are at least once:
  receivers deduplicate on the `X-Job-Id` header.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import logging
import random
import socket
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger("serving.jobs.webhooks")

MAX_URL_LENGTH = 2048
MAX_BACKOFF_S = 3600.0
USER_AGENT = "model-serving-webhook/1"
# Jitter from the OS, not the `random` module's shared generator: a handler that seeds that
# one (random.seed(0) for reproducible predictions) would give every worker the same
# jitter, and the jitter would move its sequence (and that of any test tool watching it).
_JITTER = random.SystemRandom()


class WebhookRefused(ValueError):
    """The webhook URL or the addresses it resolves to are not allowed; the message says why."""


@dataclass(frozen=True)
class WebhookPolicy:
    """What a webhook may target, from the settings."""

    allow_loopback: bool = False
    timeout_s: float = 10.0


@dataclass(frozen=True)
class Delivery:
    """The outcome of one delivery attempt."""

    delivered: bool
    error: str | None = None
    retryable: bool = True


def check_url(url: str, policy: WebhookPolicy) -> str:
    """`url` when its form is acceptable (checked at submit); raises `WebhookRefused`.

    Host names are resolved only at delivery; an IP-literal host is judged here already.
    """
    if len(url) > MAX_URL_LENGTH:
        raise WebhookRefused(f"webhook URL longer than {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise WebhookRefused(f"webhook URL is malformed: {exc}") from None
    if parts.scheme not in ("https", "http"):
        raise WebhookRefused("webhook URL must start with https://")
    if not parts.hostname:
        raise WebhookRefused("webhook URL has no host")
    if parts.username is not None or parts.password is not None:
        raise WebhookRefused("webhook URL must not carry a user name or password")
    if any(ch.isspace() for ch in url) or any(ord(ch) < 32 for ch in url):
        raise WebhookRefused("webhook URL contains whitespace or control characters")
    if parts.scheme == "http" and not policy.allow_loopback:
        raise WebhookRefused("webhook URL must start with https://")
    if port == 0:
        raise WebhookRefused("webhook URL has port 0")
    host = parts.hostname.lower().rstrip(".")
    if (host == "localhost" or host.endswith(".localhost")) and not policy.allow_loopback:
        raise WebhookRefused("webhook target localhost is not a public address")
    literal = _ip_literal(parts.hostname)
    if literal is not None:
        _check_address(literal, parts.scheme, policy)
    elif parts.scheme == "http" and host != "localhost":
        raise WebhookRefused("http:// webhooks may only target loopback addresses")
    return url


def resolve(url: str, policy: WebhookPolicy) -> tuple[str, list[str]]:
    """`(host, addresses)` of a webhook URL, each address allowed; raises `WebhookRefused`."""
    check_url(url, policy)
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise WebhookRefused(f"webhook host {host!r} does not resolve: {exc.strerror}") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise WebhookRefused(f"webhook host {host!r} has no address")
    for address in addresses:
        # One disallowed answer refuses the host: an attacker's DNS may mix a public
        # address with a private one and hope the private one is tried.
        _check_address(ipaddress.ip_address(address.split("%")[0]), parts.scheme, policy)
    return host, addresses


def address_allowed(address: ipaddress.IPv4Address | ipaddress.IPv6Address, *, allow_loopback: bool) -> bool:
    """True when a webhook may connect to `address`."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is not None:
            address = embedded
    if address.is_loopback:
        return allow_loopback
    return address.is_global and not address.is_multicast


def _check_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address, scheme: str, policy: WebhookPolicy) -> None:
    if not address_allowed(address, allow_loopback=policy.allow_loopback):
        raise WebhookRefused(f"webhook target {address} is not a public address")
    if scheme == "http" and not address.is_loopback:
        raise WebhookRefused("http:// webhooks may only target loopback addresses")


def _ip_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return None


def backoff_s(attempt: int, base_s: float) -> float:
    """Seconds before retry number `attempt` (1 = the first retry), doubling, with jitter."""
    delay: float = min(base_s * 2.0 ** (attempt - 1), MAX_BACKOFF_S)
    return delay * _JITTER.uniform(0.8, 1.2)


def deliver(url: str, document: dict[str, Any], attempt: int, policy: WebhookPolicy) -> Delivery:
    """POST `document` to `url` once, connecting only to checked addresses."""
    try:
        host, addresses = resolve(url, policy)
    except WebhookRefused as exc:
        return Delivery(False, str(exc), retryable=False)
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    body = json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Job-Id": str(document.get("job_id", "")),
        "X-Webhook-Attempt": str(attempt),
    }
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        connection = _PinnedHTTPSConnection(host, addresses[0], parts.port or 443, policy.timeout_s)
    else:
        connection = _PinnedHTTPConnection(host, addresses[0], parts.port or 80, policy.timeout_s)
    try:
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        response.read(65536)
        status = response.status
    except (OSError, http.client.HTTPException) as exc:
        return Delivery(False, f"{exc.__class__.__name__}: {exc}"[:300])
    finally:
        connection.close()
    if 200 <= status < 300:
        return Delivery(True)
    return Delivery(False, f"the webhook target answered {status}")


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """HTTP to a fixed address, with the URL's host in the Host header."""

    def __init__(self, host: str, address: str, port: int, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to a fixed address, verifying the certificate against the URL's host."""

    def __init__(self, host: str, address: str, port: int, timeout: float) -> None:
        self._tls = ssl.create_default_context()
        super().__init__(host, port, timeout=timeout, context=self._tls)
        self._address = address

    def connect(self) -> None:
        raw = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._tls.wrap_socket(raw, server_hostname=self.host)
