"""Webhooks: the SSRF policy, delivery with retries and backoff, TLS verification."""

from __future__ import annotations

import http.server
import ipaddress
import json
import random
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from serving.jobs.webhooks import WebhookPolicy, WebhookRefused, address_allowed, backoff_s, check_url, deliver, resolve
from tests.jobs.conftest import wait_for

LOOPBACK_OK = WebhookPolicy(allow_loopback=True, timeout_s=5)
STRICT = WebhookPolicy(allow_loopback=False, timeout_s=5)


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("8.8.8.8", True),
        ("2001:4860:4860::8888", True),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("127.0.0.1", False),
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("255.255.255.255", False),
        ("::1", False),
        ("fd00::1", False),
        ("fe80::1", False),
        ("::ffff:10.0.0.1", False),
        ("::ffff:169.254.169.254", False),
        ("2002:a00:1::", False),
    ],
    ids=lambda value: str(value),
)
def test_only_public_addresses_are_allowed(address: str, allowed: bool) -> None:
    assert address_allowed(ipaddress.ip_address(address), allow_loopback=False) is allowed


def test_loopback_only_when_the_setting_allows() -> None:
    assert address_allowed(ipaddress.ip_address("127.0.0.1"), allow_loopback=True)
    assert address_allowed(ipaddress.ip_address("::1"), allow_loopback=True)
    assert not address_allowed(ipaddress.ip_address("10.0.0.1"), allow_loopback=True)


@pytest.mark.parametrize(
    ("url", "policy", "reason"),
    [
        ("http://127.0.0.1:9/x", STRICT, "https://"),
        ("http://hooks.example/x", LOOPBACK_OK, "loopback"),
        ("http://10.0.0.1/x", LOOPBACK_OK, "not a public address"),
        ("https://localhost/x", STRICT, "not a public address"),
        ("https://x.localhost./x", STRICT, "not a public address"),
        ("https://hooks.example/" + "a" * 2100, STRICT, "longer than"),
        ("https://hooks.example/a b", STRICT, "whitespace"),
        ("javascript:alert(1)", STRICT, "https://"),
    ],
    ids=["http-strict", "http-public", "http-private", "localhost", "dot-localhost", "long", "space", "javascript"],
)
def test_check_url_refusals(url: str, policy: WebhookPolicy, reason: str) -> None:
    with pytest.raises(WebhookRefused, match=reason):
        check_url(url, policy)


def test_names_are_judged_by_what_they_resolve_to() -> None:
    # `localhost` passes the syntax check when loopback is allowed, but with loopback
    # off its resolved address is refused: the check happens after DNS.
    with pytest.raises(WebhookRefused, match="not a public address"):
        resolve("https://localhost/x", STRICT)
    host, addresses = resolve("http://localhost:8/x", LOOPBACK_OK)

    assert host == "localhost"
    assert all(ipaddress.ip_address(a).is_loopback for a in addresses)


def test_a_name_that_does_not_resolve_is_a_permanent_failure() -> None:
    outcome = deliver("https://no-such-host.invalid/x", {"job_id": "j"}, 1, STRICT)

    assert not outcome.delivered
    assert not outcome.retryable
    assert "does not resolve" in (outcome.error or "")


def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    delays = [backoff_s(attempt, 10) for attempt in (1, 2, 3, 20)]

    assert 8 <= delays[0] <= 12
    assert 16 <= delays[1] <= 24
    assert 32 <= delays[2] <= 48
    assert delays[3] <= 3600 * 1.2


def test_backoff_jitter_neither_reads_nor_moves_the_shared_random_generator() -> None:
    # A handler may seed `random` (all workers would then wait alike), and tools such as
    # hypothesis watch its state: the jitter comes from the OS instead.
    random.seed(0)
    state = random.getstate()
    delays = {backoff_s(1, 10) for _ in range(20)}
    assert random.getstate() == state
    random.seed(0)
    assert {backoff_s(1, 10) for _ in range(20)} != delays


class _Receiver:
    """A loopback webhook target that fails the first `failures` deliveries with 500."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.received: list[tuple[dict[str, str], dict[str, Any]]] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.received.append((dict(self.headers), body))
                status = 500 if len(receiver.received) <= receiver.failures else 204
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/done?src=test"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> _Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    with _Receiver(failures=2) as target:
        yield target


def test_delivery_is_retried_with_backoff_until_it_succeeds(
    make_jobs_app: Callable[..., Flask], receiver: _Receiver
) -> None:
    app = make_jobs_app(
        jobs_workers=1, jobs_webhook_allow_loopback=True, jobs_webhook_backoff_s=0.1, jobs_webhook_max_attempts=5
    )
    client = app.test_client()

    location = client.post(
        "/v1/Echo", json={"text": "hook"}, headers={"Prefer": "respond-async", "Webhook-Url": receiver.url}
    ).headers["Location"]
    wait_for(lambda: client.get(location).get_json().get("webhook", {}).get("state") == "delivered", timeout=20)

    assert len(receiver.received) == 3
    headers, body = receiver.received[-1]
    assert body["job_id"] == location.rsplit("/", 1)[-1]
    assert body["status"] == "succeeded"
    assert body["result"] == {"text": "hook"}
    assert headers["X-Job-Id"] == body["job_id"]
    assert [h["X-Webhook-Attempt"] for h, _ in receiver.received] == ["1", "2", "3"]
    assert headers["Content-Type"] == "application/json"


def test_delivery_gives_up_after_the_last_attempt(make_jobs_app: Callable[..., Flask]) -> None:
    app = make_jobs_app(
        jobs_workers=1, jobs_webhook_allow_loopback=True, jobs_webhook_backoff_s=0.05, jobs_webhook_max_attempts=2
    )
    client = app.test_client()
    with _Receiver(failures=100) as target:
        location = client.post(
            f"/v1/Echo?async=true&webhook={target.url.replace('?', '%3F').replace('&', '%26')}", json={"text": "x"}
        ).headers["Location"]
        doc = wait_for(lambda: (d := client.get(location).get_json()).get("webhook", {}).get("state") == "failed" and d)

    assert len(target.received) == 2
    assert doc["webhook"]["error"] == "the webhook target answered 500"


@pytest.fixture
def self_signed_https(tmp_path: Path) -> Iterator[str]:
    """An HTTPS server on 127.0.0.1 whose certificate no public CA signed."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://localhost:{server.server_port}/hook"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.e2e
def test_https_certificates_are_verified(self_signed_https: str) -> None:
    outcome = deliver(self_signed_https, {"job_id": "j"}, 1, LOOPBACK_OK)

    assert not outcome.delivered
    assert outcome.retryable
    assert "CERTIFICATE_VERIFY_FAILED" in (outcome.error or "")
