"""Per-client rate limits: 429 JSON with Retry-After, per key or address, in memory or Redis."""

from __future__ import annotations

import logging
import socket
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from serving.config.api_keys import parse_key_specs
from serving.config.settings import Settings, SettingsError
from tests.conftest import FIXTURE_HANDLERS, require_service
from tests.servers import free_port

ECHO = {"text": "hi"}
OPS = "ops-secret-0123456789abcdef"
WIDGET = "widget-secret-0123456789abcd"


def _redis_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@pytest.fixture
def limited(make_app: Callable[..., Flask]) -> Callable[..., Flask]:
    def build(limits: str = "3/minute", **overrides: Any) -> Flask:
        return make_app(handlers_dir=FIXTURE_HANDLERS / "ok", rate_limits=limits, **overrides)

    return build


def _post(client: FlaskClient, address: str = "203.0.113.7", **headers: str) -> Any:
    return client.post("/v1/Echo", json=ECHO, headers=headers, environ_base={"REMOTE_ADDR": address})


def test_over_the_limit_is_429_json_with_retry_after(limited: Callable[..., Flask]) -> None:
    client = limited("3/minute").test_client()

    statuses = [_post(client).status_code for _ in range(4)]
    refused = _post(client)

    assert statuses == [200, 200, 200, 429]
    assert refused.status_code == 429
    assert refused.is_json
    assert refused.get_json()["code"] == "rate_limited"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["X-Request-Id"]


def test_each_address_has_its_own_budget(limited: Callable[..., Flask]) -> None:
    client = limited("2/minute").test_client()

    first = [_post(client, "198.51.100.1").status_code for _ in range(3)]
    second = [_post(client, "198.51.100.2").status_code for _ in range(3)]

    assert first == [200, 200, 429]
    assert second == [200, 200, 429]


def test_each_key_has_its_own_budget_whatever_the_address(limited: Callable[..., Flask]) -> None:
    client = limited("2/minute", api_keys=parse_key_specs(f"ops:{OPS},widget:{WIDGET}")).test_client()

    ops = [_post(client, f"198.51.100.{i}", **{"X-API-Key": OPS}).status_code for i in range(3)]
    widget = [_post(client, "198.51.100.9", **{"X-API-Key": WIDGET}).status_code for _ in range(2)]

    assert ops == [200, 200, 429]  # three addresses, one key: one budget
    assert widget == [200, 200]


def test_failed_key_guesses_count_against_the_address(limited: Callable[..., Flask]) -> None:
    client = limited("3/minute", api_keys=parse_key_specs(f"ops:{OPS}")).test_client()

    guesses = [_post(client, **{"X-API-Key": f"guess-{i:020d}"}).status_code for i in range(4)]

    assert guesses == [401, 401, 401, 429]


def test_public_routes_and_preflights_are_not_counted(limited: Callable[..., Flask]) -> None:
    client = limited("2/minute").test_client()

    for _ in range(5):
        assert client.get("/healthz").status_code == 200
        client.options("/v1/Echo", headers={"Origin": "https://a.example", "Access-Control-Request-Method": "POST"})

    assert [_post(client).status_code for _ in range(3)] == [200, 200, 429]


def test_no_limits_by_default(fixture_client: FlaskClient) -> None:
    assert {_post(fixture_client).status_code for _ in range(50)} == {200}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"RATE_LIMITS": "lots"}, "RATE_LIMITS='lots' is not valid"),
        ({"RATE_LIMITS": "10/fortnight"}, "RATE_LIMITS='10/fortnight'"),
        ({"RATE_LIMIT_STORAGE_URL": "mongodb://h"}, "RATE_LIMIT_STORAGE_URL=<redacted> is not valid"),
    ],
)
def test_bad_limit_settings_fail_at_start(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env)

    assert message in str(caught.value)


@pytest.fixture
def redis_url() -> Iterator[str]:
    require_service(_redis_up(), "Redis is not running on 127.0.0.1:6379")
    return "redis://127.0.0.1:6379/0"


def test_redis_counters_are_shared_by_every_worker(limited: Callable[..., Flask], redis_url: str) -> None:
    prefix = f"test-{uuid.uuid4().hex}"
    # Two apps stand for two gunicorn workers (or two instances) sharing one Redis.
    one = limited("3/minute", rate_limit_storage_url=redis_url, rate_limit_key_prefix=prefix).test_client()
    two = limited("3/minute", rate_limit_storage_url=redis_url, rate_limit_key_prefix=prefix).test_client()

    statuses = [_post(one).status_code, _post(two).status_code, _post(one).status_code, _post(two).status_code]

    assert statuses == [200, 200, 200, 429]
    assert redis.Redis.from_url(redis_url).keys(f"*{prefix}*")


def test_unreachable_redis_never_takes_the_api_down(
    limited: Callable[..., Flask], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    dead = f"redis://127.0.0.1:{free_port()}/0"
    client = limited("2/minute", rate_limit_storage_url=dead).test_client()

    statuses = [_post(client).status_code for _ in range(3)]

    # Served, and still limited: the in-memory fallback keeps counting.
    assert statuses == [200, 200, 429]
    assert any("unreachable" in r.getMessage() for r in caplog.records)
